import Testing
@testable import KilnFormat

@Test func formatVersionIsOne() { #expect(ArtifactFormat.version.major == 1) }
