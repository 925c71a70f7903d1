"""On the line: what surrounds the run loop on a production line. ``dae run``'s live view, MQTT and
several cameras (``run.py`` wires them), ``dae serve`` (``serve.py``), the web server and its page
(``webserver.py``, ``webpage.py``), the state they share (``livestate.py``), the MQTT publisher
(``mqtt.py``) and several sources at once (``multisource.py``). Built on the frame path at
``runtime/``'s top (bundle, sources, run loop); never imported by it, nor by the backends."""
