"""The smallest end-to-end check: the binary starts, answers, and stops cleanly."""
import requests


def test_hello(start):
    srv = start('''
        local mw = require "moonwire"
        local app = mw.app()
        app:get("/", function(req, res) res:send("Hello, World!") end)
        return app
    ''')
    r = requests.get(srv.url + "/")
    assert r.status_code == 200
    assert r.text == "Hello, World!"
    assert r.headers["Server"].startswith("moonwire/")
    assert srv.stop() == 0
