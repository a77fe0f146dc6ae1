import Testing
@testable import KilnPasses
