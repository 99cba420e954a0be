"""EMR Data Development 2016-04-08: renderer, reader, signed client, sandbox."""

from migrator.providers.base import ProviderPlugin
from migrator.providers.emr.client import connect
from migrator.providers.emr.read import read_export
from migrator.providers.emr.sandbox import create_app, identity

PLUGIN = ProviderPlugin(
    kind="emr", connect=connect, sandbox_app=create_app, sandbox_identity=identity, export_reader=read_export
)
