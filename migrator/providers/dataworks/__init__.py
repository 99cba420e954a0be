"""DataWorks 2024-05-18: FlowSpec renderer, signed client, sandbox."""

from migrator.providers.base import ProviderPlugin
from migrator.providers.dataworks.client import connect
from migrator.providers.dataworks.sandbox import create_app, identity

PLUGIN = ProviderPlugin(kind="dataworks", connect=connect, sandbox_app=create_app, sandbox_identity=identity)
