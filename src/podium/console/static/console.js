// Entry point of every console page: shared behaviour, then the page's own module.
import { wireCopyButtons, wireAutosubmit } from "./common.js";

wireCopyButtons(document);
wireAutosubmit(document);

const pages = { services: "./services.js", endpoint: "./endpoint.js", client: "./client.js" };
const page = document.body.dataset.page;
if (pages[page]) {
  import(pages[page]).then((m) => m.start());
}
