// Placeholder until the classifier benchmark lands (issue 3).
print("mirror-bench: not yet implemented")
