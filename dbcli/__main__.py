from dbcli.cli.main import run

run()
