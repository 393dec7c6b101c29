public enum MirrorAPIVersion { public static let current = 1 }
