// The baseline nws is measured against (tests/README.md): a one-hop broadcast relay on npm
// `ws`. Every message from a client goes, as it came (text or binary), to every other
// client of the same URL path. Usage: node relay.js [PORT] [ADDR]; prints "listening
// PORT" once it accepts connections, and exits on SIGTERM/SIGINT.
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || 0);
const host = process.argv[3] || '0.0.0.0';
const rooms = new Map();  // path -> Set of sockets

const wss = new WebSocketServer({ port, host, perMessageDeflate: false, maxPayload: 1 << 20 });
wss.on('listening', () => console.log(`listening ${wss.address().port}`));
wss.on('connection', (ws, req) => {
  const path = req.url;
  let room = rooms.get(path);
  if (!room) rooms.set(path, room = new Set());
  room.add(ws);
  ws.on('message', (data, isBinary) => {
    for (const peer of room)
      if (peer !== ws && peer.readyState === WebSocket.OPEN)
        peer.send(data, { binary: isBinary });
  });
  ws.on('close', () => {
    room.delete(ws);
    if (room.size === 0) rooms.delete(path);
  });
  ws.on('error', () => ws.terminate());
});
for (const sig of ['SIGTERM', 'SIGINT'])
  process.on(sig, () => process.exit(0));
