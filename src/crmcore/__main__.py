from crmcore.cli import entry

entry()
