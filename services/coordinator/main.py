"""Entry point named in the image's CMD: ``uvicorn services.coordinator.main:app``.

Importing builds the app only; configuration is read at start-up, so a missing variable stops
the service with one message (exit code 78) rather than an import-time traceback.
"""

from services.coordinator.app import create_app

app = create_app(exit_on_config_error=True)
