// The official Node tus server (@tus/server + @tus/file-store), default settings, on loopback.
//   node bench/peer/server.mjs PORT DIRECTORY
import http from "node:http";
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const [port, directory] = process.argv.slice(2);
const tus = new Server({ path: "/files", datastore: new FileStore({ directory }) });
http
  .createServer((req, res) => {
    if (req.url === "/healthz") {
      res.end("ok");
      return;
    }
    tus.handle(req, res);
  })
  .listen(Number(port), "127.0.0.1");
