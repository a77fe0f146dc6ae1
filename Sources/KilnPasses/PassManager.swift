import KilnIR

/// Graph rewrites run in order by a pass manager (work in progress).
public enum KilnPasses {}
