'use strict';
// A real Node.js azure-iot-device module (versions pinned in package-lock.json), created from the
// edge environment with ModuleClient.fromEnvironment(Mqtt): it reads the IOTEDGE_* variables,
// has its SAS tokens signed by the workload API and trusts the CA the workload API hands out.
// Driven by the edge hub's integration tests.
//
// It speaks the same protocol as ../module_client.py, so the Rust support code drives both:
// every action prints one JSON line on stdout, and the test waits for lines instead of sleeping.
// Usage: node module_client.js <command> [json-argument]
//
// With MODULE_CLIENT_WEBSOCKETS=1 the module connects with MQTT over WebSocket (MqttWs:
// wss://<IOTEDGE_GATEWAYHOSTNAME>:443/$iothub/websocket) instead of MQTT on 8883.
//
//   send '[{"output": "out1", "data": "...", "props": {...}, "json": true, "id": "m1"}, ...]'
//       sends each message on its output (resolves on its PUBACK), prints {"sent": n}
//   receive '{"count": 3}'
//       prints {"input", "data", "props", "message_id", "content_type"} per input message
//   twin '{"reported": {...}, "desired_wait": true}'
//       patches reported properties, prints the twin; optionally waits for a desired patch
//   methods '{"count": 1, "names": ["ping"]}'
//       answers direct methods with {"echo": payload}, prints {"method", "payload"} per call.
//       The Node SDK registers handlers per method name (Python has one for all): "names" lists
//       them, default ["ping"].

const { ModuleClient, Message } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');

function emit(obj) {
  // Writes to a pipe are synchronous on Linux: a line is out before the next statement runs.
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(obj) {
  emit(obj);
  process.exit(1);
}

// Counts events; `wait` resolves once `target` were counted, or fails the module after
// `timeoutSeconds` with the line `onTimeout(count)` returns.
function counter(target) {
  let count = 0;
  let reach;
  const reached = new Promise((resolve) => {
    reach = resolve;
  });
  if (target <= 0) reach();
  return {
    add() {
      count += 1;
      if (count >= target) reach();
    },
    wait(timeoutSeconds, onTimeout) {
      const timer = setTimeout(() => fail(onTimeout(count)), timeoutSeconds * 1000);
      return reached.then(() => clearTimeout(timer));
    },
  };
}

async function connect() {
  const transport = process.env.MODULE_CLIENT_WEBSOCKETS === '1' ? MqttWs : Mqtt;
  const client = await ModuleClient.fromEnvironment(transport);
  client.on('error', (err) => fail({ error: String(err && err.stack ? err.stack : err) }));
  await client.open();
  return client;
}

async function send(client, arg) {
  for (const m of arg) {
    const data = typeof m.data === 'string' ? m.data : JSON.stringify(m.data);
    const msg = new Message(data);
    if (m.id !== undefined) msg.messageId = m.id;
    if (m.json) {
      msg.contentType = 'application/json';
      msg.contentEncoding = 'utf-8';
    }
    for (const [k, v] of Object.entries(m.props || {})) {
      msg.properties.add(k, String(v));
    }
    await client.sendOutputEvent(m.output, msg);
  }
  emit({ sent: arg.length });
}

// Application and connection properties ($.cdid, $.cmid, ...) as one object, as Python's
// custom_properties.
function properties(msg) {
  const props = {};
  for (const { key, value } of msg.properties.propertyList) props[key] = value;
  return props;
}

// The Node SDK subscribes to inputs when the first `inputMessage` listener is added and reports
// the SUBACK to no one; the module is ready only once the subscription stands. Asking again
// sends a second SUBSCRIBE of the same filter (the transport does not join one in flight), whose
// SUBACK comes after the first's. The listener goes first so no message can arrive unheard.
function enableInputs(client) {
  return new Promise((resolve, reject) => {
    client._enableInputMessages((err) => (err ? reject(err) : resolve()));
  });
}

// Likewise for direct methods: the first onMethod subscribes to $iothub/methods/POST/#.
function enableMethods(client) {
  return new Promise((resolve, reject) => {
    client._enableMethods((err) => (err ? reject(err) : resolve()));
  });
}

async function receive(client, arg) {
  const got = counter(arg.count);
  client.on('inputMessage', (inputName, msg) => {
    emit({
      input: inputName,
      data: Buffer.isBuffer(msg.data) ? msg.data.toString('utf-8') : msg.data,
      props: properties(msg),
      message_id: msg.messageId === undefined ? null : msg.messageId,
      content_type: msg.contentType === undefined ? null : msg.contentType,
    });
    // Over MQTT the PUBACK went out on receipt; complete() is the SDK's contract all the same.
    client.complete(msg, () => got.add());
  });
  await enableInputs(client);
  emit({ ready: true });
  await got.wait(arg.timeout || 60, (n) => ({ timeout: true, received: n }));
}

function twinDocument(twin) {
  // Through JSON: drops the `update` function the SDK hangs on `reported`.
  return JSON.parse(JSON.stringify({ desired: twin.properties.desired, reported: twin.properties.reported }));
}

async function twin(client, arg) {
  let twin = await client.getTwin();
  // As module_client.py, the desired handler is in place before the reported patch. The Node SDK
  // also calls a `properties.desired` listener with the whole desired document, when the listener
  // is added and after every GET: only versions newer than the last one seen are patches.
  let seen = twin.properties.desired.$version || 0;
  const patches = counter(1);
  twin.on('properties.desired', (delta) => {
    if (typeof delta.$version === 'number' && delta.$version > seen) {
      seen = delta.$version;
      emit({ desired_patch: JSON.parse(JSON.stringify(delta)) });
      patches.add();
    }
  });
  if (arg.reported !== undefined) {
    await new Promise((resolve, reject) => {
      twin.properties.reported.update(arg.reported, (err) => (err ? reject(err) : resolve()));
    });
    emit({ patched: true });
  }
  // Read back from the edge hub: getTwin on a client that has a twin sends a fresh GET.
  twin = await client.getTwin();
  emit({ twin: twinDocument(twin) });
  if (arg.desired_wait) {
    await patches.wait(arg.timeout || 60, () => ({ timeout: true }));
  }
}

async function methods(client, arg) {
  const calls = counter(arg.count || 1);
  for (const name of arg.names || ['ping']) {
    client.onMethod(name, (request, response) => {
      const payload = request.payload === undefined ? null : request.payload;
      emit({ method: request.methodName, payload });
      response.send(200, { echo: payload }, (err) => {
        if (err) fail({ error: `method response: ${err}` });
        calls.add();
      });
    });
  }
  await enableMethods(client);
  emit({ ready: true });
  // The Node SDK publishes method responses at QoS 0 (Python at QoS 1, waiting for the PUBACK),
  // so "sent" only means written to the socket; the module then closes at once. The edge hub
  // still handles what a client sent before its DISCONNECT (tests/upstream.rs checks that with a
  // raw client).
  await calls.wait(arg.timeout || 60, () => ({ timeout: true }));
}

async function main() {
  const command = process.argv[2];
  const arg = process.argv[3] ? JSON.parse(process.argv[3]) : {};
  const run = { send, receive, twin, methods }[command];
  if (!run) fail({ error: `unknown command ${command}` });
  const client = await connect();
  try {
    await run(client, arg);
  } finally {
    await client.close();
  }
  process.exit(0);
}

main().catch((err) => fail({ error: String(err && err.stack ? err.stack : err) }));
