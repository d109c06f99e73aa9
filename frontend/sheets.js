// Paper sheets: sheet IDs (same rules as backend/printing.py) and the record id of a transcribed row.
//
// Sheet ID "YYMMDD-RRRRRR-C": print date, six random Crockford base32 characters, a Luhn mod 32 check
// character. IDs from the server start the random part with a digit; IDs made here (printing offline)
// start it with a letter, so the two can never collide.

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const LETTERS = ALPHABET.slice(10);
// The same namespace as PAPER_NAMESPACE in backend/records.py and backend/printing.py.
export const PAPER_NAMESPACE = "6f1d2b6e-4c3a-5e59-9a57-0d3b1c9e7a41";

export function checkChar(payload) {
  let factor = 2;
  let total = 0;
  for (const char of [...payload].reverse()) {
    const addend = factor * ALPHABET.indexOf(char);
    factor = factor === 2 ? 1 : 2;
    total += Math.floor(addend / 32) + (addend % 32);
  }
  return ALPHABET[(32 - (total % 32)) % 32];
}

// What someone typed → canonical "YYMMDD-RRRRRR-C", or null when it is not a valid sheet ID.
export function normalizeSheetId(text) {
  const raw = String(text || "").replace(/[\s\-_.]/g, "").toUpperCase()
    .replace(/O/g, "0").replace(/[IL]/g, "1");
  if (!/^\d{6}[0-9A-Z]{7}$/.test(raw) || [...raw].some((c) => !ALPHABET.includes(c))) return null;
  if (checkChar(raw.slice(0, 12)) !== raw[12]) return null;
  return `${raw.slice(0, 6)}-${raw.slice(6, 12)}-${raw[12]}`;
}

export function localDay(date = new Date()) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(date.getFullYear() % 100)}${pad(date.getMonth() + 1)}${pad(date.getDate())}`;
}

// A sheet ID made on this device, for printing while the server cannot be reached.
export function deviceSheetId(date = new Date()) {
  const random = crypto.getRandomValues(new Uint8Array(6));
  const chars = [LETTERS[random[0] % LETTERS.length], ...[...random.slice(1)].map((b) => ALPHABET[b % 32])];
  const payload = localDay(date) + chars.join("");
  return `${payload.slice(0, 6)}-${payload.slice(6)}-${checkChar(payload)}`;
}

export function isDeviceSheet(sheetId) {
  return LETTERS.includes(sheetId[7]);
}

function hex(bytes) {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// RFC 4122 version 5 (SHA-1) UUID, as Python's uuid.uuid5(namespace, name).
export async function uuid5(namespace, name) {
  const ns = namespace.replace(/-/g, "").match(/../g).map((b) => parseInt(b, 16));
  const data = new Uint8Array([...ns, ...new TextEncoder().encode(name)]);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-1", data)).slice(0, 16);
  digest[6] = (digest[6] & 0x0f) | 0x50;
  digest[8] = (digest[8] & 0x3f) | 0x80;
  const h = hex(digest);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// The record id of row `row` of a paper sheet of a site (as backend/printing.py): typing the same row twice
// gives the same record, and another site can never take the id of one of ours.
export function paperRecordId(site, sheetId, row) {
  return uuid5(PAPER_NAMESPACE, `${site}:${sheetId}:${row}`);
}

// Rows of a printed blank form (print.js draws them, transcribe.js accepts no row beyond them).
// Page geometry (mm) of a landscape A4 sheet: the rows that fit are computed, never left to chance.
const PAGE_H = 186; // 210 − 2 × 10 mm margins, less 4 mm for borders and rounding
const HEAD_H = 30;
const THEAD_H = 16;
const LEGEND_LINE_H = 5;
const FOOT_H = 9;
const ROW_H = 12; // room for handwriting

export function rowsThatFit(definition) {
  const legendLines = definition.fields.filter((f) => f.type === "choice").length;
  return Math.floor((PAGE_H - HEAD_H - THEAD_H - legendLines * LEGEND_LINE_H - FOOT_H) / ROW_H);
}
