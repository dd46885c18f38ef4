from airlock.cli.main import main

main()
