import Relay
print("pyrycode-relay")
