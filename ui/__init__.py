"""twinchat's browser pages: the research studio (/studio) and the customer portal (/portal).

Gradio apps over TwinService and nothing else: consent, audit and roles apply to every click as they do to
every HTTP request. ``ui.server.mount(app, service)`` adds both to a FastAPI app (``twinchat serve``);
``twinchat ui`` serves them alone.
"""

from ui.gradio_startup import install as _install_gradio_startup

_install_gradio_startup()
