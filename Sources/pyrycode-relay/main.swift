import CEpoll
import RelayOperations

exit(RelayApp.main(arguments: Array(CommandLine.arguments.dropFirst())))
