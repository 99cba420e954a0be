"""EnOS Batch Processing Service v2.1: renderer, reader, APIM-signed client, sandbox."""

from migrator.providers.base import ProviderPlugin
from migrator.providers.enos.client import connect
from migrator.providers.enos.read import read_export
from migrator.providers.enos.sandbox import create_app, identity

PLUGIN = ProviderPlugin(
    kind="enos", connect=connect, sandbox_app=create_app, sandbox_identity=identity, export_reader=read_export
)
