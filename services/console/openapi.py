"""`python -m services.console.openapi > docs/console-openapi.json`: the API document."""

from services.console.main import openapi_json

if __name__ == "__main__":
    print(openapi_json(), end="")
