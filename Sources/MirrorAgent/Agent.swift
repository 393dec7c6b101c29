public enum MirrorAgentInfo { public static let version = "0.1.0" }
