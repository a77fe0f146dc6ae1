import KilnIR

/// The compiler driver: frontend → passes → partition → compile → artifact (work in progress).
public enum Compiler {}
