import ArgumentParser
import Histogram
import Relay

print("relay-bench: not yet implemented")
