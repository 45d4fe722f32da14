"""A small Flask app served by Podium as it is."""

from flask import Flask, Response, jsonify, request

app = Flask(__name__)
NOTES = {}


@app.get("/")
def index():
    return "flask root"


@app.route("/notes/<name>", methods=["GET", "PUT", "DELETE"])
def notes(name):
    if request.method == "PUT":
        NOTES[name] = request.get_data(as_text=True)
        return jsonify(stored=name), 201
    if request.method == "DELETE":
        NOTES.pop(name, None)
        return "", 204
    if name not in NOTES:
        return jsonify(error="no note"), 404
    return jsonify(name=name, text=NOTES[name], q=request.args.get("q"), agent=request.headers.get("X-Agent"))


@app.post("/form")
def form():
    return jsonify(fields=request.form.to_dict(), script_root=request.script_root, path=request.path)


@app.get("/lines")
def lines():
    def gen():
        for i in range(3):
            yield f"flask {i}\n"

    return Response(gen(), mimetype="text/plain", headers={"X-Custom": "yes"})
