import Testing
@testable import KilnCPU
