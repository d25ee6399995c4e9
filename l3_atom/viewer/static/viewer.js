// L3 Atom live viewer: one websocket (/ws on the page's own host), a book ladder, a trade tape and
// 1-minute candles.  Books are rebuilt here from lob / lob_l3 records (is_snapshot replaces the book);
// sizes add up exactly as integers scaled by 10^18 (the schemas' decimal scale), never as floats.
"use strict";

const DEPTH = 10;            // ladder levels per side
const TAPE = 30;             // trades shown
const CANDLES = 40;          // candles drawn at most
const MIN_CANDLE_SLOTS = 15; // a few candles are not drawn wider than this allows
const MINUTE_MS = 60000;
const RECONNECT_MS = 1000;
const RENDER_DELAY_MS = 50;  // records arriving together are drawn once
const RESUBSCRIBE_MS = 2000; // after a gap, fresh snapshots at most this often
const BOOK_FEEDS = ["lob", "lob_l3"];
const TRADE_FEEDS = ["trades", "trades_l3"];
const CANDLE_FEED = "candle";
const SCALE = 18;
const ONE = 10n ** BigInt(SCALE);

// Exact decimals: "123.45" <-> 123450000000000000000n.
function dec(text) {
  const negative = text.startsWith("-");
  const [whole, fraction = ""] = (negative ? text.slice(1) : text).split(".");
  const value = BigInt(whole || "0") * ONE + BigInt((fraction + "0".repeat(SCALE)).slice(0, SCALE));
  return negative ? -value : value;
}

function plain(value) {
  const negative = value < 0n;
  const magnitude = negative ? -value : value;
  const fraction = (magnitude % ONE).toString().padStart(SCALE, "0").replace(/0+$/, "");
  return (negative ? "-" : "") + (magnitude / ONE).toString() + (fraction ? "." + fraction : "");
}

// One symbol's book from one feed: levels per side (price text -> size), and for lob_l3 the orders.
class Book {
  constructor(feed) {
    this.feed = feed;
    this.message = null;
    this.clear();
  }

  clear() {
    this.levels = { bid: new Map(), ask: new Map() };
    this.orders = new Map();
    this.records = 0;
  }

  // A snapshot starts with an is_snapshot record that is not from the same message as the one before.
  apply(record) {
    const message = `${record.sequence}|${record.atom_timestamp}|${record.is_snapshot}`;
    if (message !== this.message) {
      this.message = message;
      if (record.is_snapshot) this.clear();
    }
    this.change(record);
  }

  load(records) {
    this.clear();
    this.message = null;
    records.forEach((record) => this.change(record));
  }

  change(record) {
    this.records += 1;
    if (this.feed === "lob") {
      this.set(record.side, record.price, dec(record.size));
      return;
    }
    const known = this.orders.get(record.order_id);
    if (record.event_type === "open") {
      if (known) this.remove(known);
      this.add({ id: record.order_id, side: record.side, price: record.price, size: dec(record.size) });
    } else if (known) {  // events of orders never seen (rested before the stream) are ignored
      this.remove(known);
      if (record.event_type === "change" && dec(record.size) > 0n) {
        this.add({ ...known, price: record.price ?? known.price, size: dec(record.size) });
      }
    }
  }

  add(order) {
    this.orders.set(order.id, order);
    this.set(order.side, order.price, (this.levels[order.side].get(order.price) ?? 0n) + order.size);
  }

  remove(order) {
    this.orders.delete(order.id);
    this.set(order.side, order.price, (this.levels[order.side].get(order.price) ?? 0n) - order.size);
  }

  set(side, price, size) {
    if (size > 0n) this.levels[side].set(price, size);
    else this.levels[side].delete(price);
  }

  top(side, depth) {
    const prices = [...this.levels[side].keys()].map((price) => [dec(price), price]);
    prices.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    if (side === "bid") prices.reverse();
    return prices.slice(0, depth).map(([, price]) => [price, this.levels[side].get(price)]);
  }
}

const view = {
  socket: null,
  info: { feeds: [], symbols: [] },
  key: null,
  books: {},
  inSync: {},
  trades: [],
  candles: new Map(),   // minute start -> {open, high, low, close, volume, fromServer}
  records: 0,
  dropped: 0,
  renderPending: false,
  resubscribedAt: 0,
};

const $ = (id) => document.getElementById(id);

function send(request) {
  if (view.socket && view.socket.readyState === WebSocket.OPEN) view.socket.send(JSON.stringify(request));
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws`);
  view.socket = socket;
  socket.onopen = () => status("connected");
  socket.onmessage = (event) => receive(JSON.parse(event.data));
  socket.onclose = () => {
    status("disconnected; reconnecting…");
    view.key = null;
    setTimeout(connect, RECONNECT_MS);
  };
}

function receive(message) {
  if (message.topic !== undefined) {
    record(message);
  } else if (message.type === "info") {
    view.info = message;
    fillChoices();
  } else if (message.type === "snapshot") {
    if (message.key === view.key) {
      view.books[message.feed] = view.books[message.feed] || new Book(message.feed);
      view.books[message.feed].load(message.records);
      view.inSync[message.feed] = message.in_sync;
    }
  } else if (message.type === "dropped") {
    // A gap in the stream: the books are no longer exact; subscribing again brings fresh snapshots.
    view.dropped += message.count;
    if (Date.now() - view.resubscribedAt > RESUBSCRIBE_MS) {
      view.resubscribedAt = Date.now();
      select(view.key, true);
    }
  } else if (message.type === "error") {
    status(`server: ${message.error}`);
  }
  schedule();
}

function record(message) {
  if (message.key !== view.key) return;
  view.records += 1;
  if (BOOK_FEEDS.includes(message.topic)) {
    const book = view.books[message.topic] = view.books[message.topic] || new Book(message.topic);
    book.apply(message);
  } else if (TRADE_FEEDS.includes(message.topic)) {
    view.trades.unshift(message);
    view.trades.length = Math.min(view.trades.length, TAPE);
    addTrade(message);
  } else if (message.topic === CANDLE_FEED && message.interval === "1m") {
    view.candles.set(message.start, {
      open: message.open, high: message.high, low: message.low, close: message.close, fromServer: true,
    });
  }
}

// Candles from trades where the server sends none (runner.py local); a server candle replaces its minute.
function addTrade(trade) {
  const start = Math.floor(trade.event_timestamp / MINUTE_MS) * MINUTE_MS;
  const candle = view.candles.get(start);
  const price = trade.price;
  if (!candle) {
    view.candles.set(start, { open: price, high: price, low: price, close: price, fromServer: false });
  } else if (!candle.fromServer) {
    const value = dec(price);
    if (value > dec(candle.high)) candle.high = price;
    if (value < dec(candle.low)) candle.low = price;
    candle.close = price;
  }
}

function fillChoices() {
  const bySource = new Map();
  for (const key of view.info.symbols) {
    const cut = key.indexOf("_");
    const exchange = key.slice(0, cut);
    if (!bySource.has(exchange)) bySource.set(exchange, []);
    bySource.get(exchange).push(key.slice(cut + 1));
  }
  const exchange = $("exchange");
  const chosen = exchange.value;
  replaceOptions(exchange, [...bySource.keys()]);
  if (chosen && bySource.has(chosen)) exchange.value = chosen;
  const symbol = $("symbol");
  const chosenSymbol = symbol.value;
  replaceOptions(symbol, bySource.get(exchange.value) || []);
  if (chosenSymbol && (bySource.get(exchange.value) || []).includes(chosenSymbol)) symbol.value = chosenSymbol;
  chooseFromForm();
}

function replaceOptions(select, values) {
  const current = [...select.options].map((option) => option.value);
  if (current.join("\n") === values.join("\n")) return;
  select.replaceChildren(...values.map((value) => new Option(value, value)));
}

function chooseFromForm() {
  const exchange = $("exchange").value;
  const symbol = $("symbol").value;
  if (exchange && symbol) select(`${exchange}_${symbol}`, false);
}

function select(key, again) {
  if (!key || (key === view.key && !again)) return;
  send({ op: "unsubscribe" });
  view.key = key;
  view.books = {};
  view.inSync = {};
  if (!again) {
    view.trades = [];
    view.candles = new Map();
    view.records = 0;
  }
  const wanted = [...BOOK_FEEDS, ...TRADE_FEEDS, CANDLE_FEED].filter((feed) => view.info.feeds.includes(feed));
  send({ op: "subscribe", feeds: wanted, symbols: [key] });
  schedule();
}

function status(text) {
  $("status").textContent = text;
}

function schedule() {
  if (view.renderPending) return;
  view.renderPending = true;
  setTimeout(render, RENDER_DELAY_MS);
}

function render() {
  view.renderPending = false;
  renderBook();
  renderTrades();
  renderCandles();
  if (view.key) {
    const drops = view.dropped ? `, ${view.dropped} dropped` : "";
    status(`${view.key}: ${view.records} records${drops}`);
  }
}

// The L2 feed where the symbol has one, else the L3 orders added up per price.
function shownBook() {
  const l2 = view.books.lob;
  if (l2 && l2.records) return l2;
  return view.books.lob_l3 || l2 || null;
}

function renderBook() {
  const book = shownBook();
  const source = book ? `${book.feed}${view.inSync[book.feed] === false ? ", out of sync" : ""}` : "waiting";
  $("book-source").textContent = source;
  const rows = (side, levels) => levels.map(([price, size]) => {
    const row = document.createElement("tr");
    row.className = side;
    row.dataset.price = price;
    row.innerHTML = "<td></td><td></td>";
    row.cells[0].textContent = price;
    row.cells[1].textContent = plain(size);
    return row;
  });
  const asks = book ? book.top("ask", DEPTH).reverse() : [];
  const bids = book ? book.top("bid", DEPTH) : [];
  $("asks").replaceChildren(...rows("ask", asks));
  $("bids").replaceChildren(...rows("bid", bids));
}

function renderTrades() {
  $("trades").replaceChildren(...view.trades.map((trade) => {
    const row = document.createElement("tr");
    const side = trade.taker_side || trade.side || "";
    row.className = side;
    row.innerHTML = "<td></td><td></td><td></td><td></td>";
    row.cells[0].textContent = new Date(trade.event_timestamp).toISOString().slice(11, 23);
    row.cells[1].textContent = trade.price;
    row.cells[2].textContent = trade.size;
    row.cells[3].textContent = side;
    return row;
  }));
}

function renderCandles() {
  const svg = $("candles");
  const starts = [...view.candles.keys()].sort((a, b) => a - b).slice(-CANDLES);
  $("candle-source").textContent = starts.some((start) => view.candles.get(start).fromServer)
    ? "from the candle topic" : "from trades";
  if (!starts.length) {
    svg.replaceChildren();
    return;
  }
  const candles = starts.map((start) => view.candles.get(start));
  const high = Math.max(...candles.map((c) => Number(c.high)));
  const low = Math.min(...candles.map((c) => Number(c.low)));
  const [width, height, pad] = [640, 280, 16];
  const y = (price) => pad + (high === low ? 0.5 : (high - Number(price)) / (high - low)) * (height - 2 * pad);
  const step = width / Math.max(candles.length, MIN_CANDLE_SLOTS);
  const ns = "http://www.w3.org/2000/svg";
  const shapes = [];
  candles.forEach((candle, index) => {
    const x = index * step + step / 2;
    const rising = dec(candle.close) >= dec(candle.open);
    const wick = document.createElementNS(ns, "line");
    wick.setAttribute("x1", x); wick.setAttribute("x2", x);
    wick.setAttribute("y1", y(candle.high)); wick.setAttribute("y2", y(candle.low));
    const body = document.createElementNS(ns, "rect");
    const top = y(rising ? candle.close : candle.open);
    body.setAttribute("x", x - step * 0.35);
    body.setAttribute("width", step * 0.7);
    body.setAttribute("y", top);
    body.setAttribute("height", Math.max(1, y(rising ? candle.open : candle.close) - top));
    const group = document.createElementNS(ns, "g");
    group.setAttribute("class", `candle ${rising ? "up" : "down"}`);
    group.dataset.start = starts[index];
    group.append(wick, body);
    shapes.push(group);
  });
  const label = (text, at) => {
    const node = document.createElementNS(ns, "text");
    node.setAttribute("x", 4);
    node.setAttribute("y", at);
    node.textContent = text;
    return node;
  };
  shapes.push(label(String(high), pad - 4), label(String(low), height - 4));
  svg.replaceChildren(...shapes);
}

$("exchange").addEventListener("change", () => fillChoices());
$("symbol").addEventListener("change", () => chooseFromForm());
connect();
