"""One router per resource; :func:`hwsurrogate.service.app.create_app` includes them all."""
