import KilnBackend
import KilnIR
import CKilnKernels

/// `kiln.cpu`: the optimized CPU backend (work in progress).
public enum KilnCPU {}
