import MirrorAgent
print("mirror-agent \(MirrorAgentInfo.version)")
