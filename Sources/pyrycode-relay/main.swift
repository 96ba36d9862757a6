import CEpoll
import Relay

exit(RelayApp.main(arguments: Array(CommandLine.arguments.dropFirst())))
