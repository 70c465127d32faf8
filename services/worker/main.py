"""Entry point named in the image's CMD: ``uvicorn services.worker.main:app``.

Configuration is read at start-up: a missing variable stops the service with one message.
"""

from services.worker.app import create_app

app = create_app(exit_on_config_error=True)
