"""A tenant's HTML page that tries to read the console with the viewer's cookie (issue 22, finding 1)."""

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

PAGE = """<!doctype html><title>tenant</title>
<script>
fetch("/console/keys").then(r => r.text()).then(t => {
  const m = t.match(/name="csrf-token" content="([^"]+)"/);
  document.title = m ? "stolen:" + m[1] : "ran";
});
</script>"""

app = FastAPI()


@app.get("/page")
def page():
    return HTMLResponse(PAGE)
