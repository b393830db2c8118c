"""The demo scripts' one way to call the hub's API: JSON in, JSON out, the admin token."""
import json
import urllib.request


def caller(api, token):
    def call(method, path, body=None):
        request = urllib.request.Request(api + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    return call
