from qwencli.cli import main

main()
