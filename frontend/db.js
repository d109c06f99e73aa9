// The device's IndexedDB database, opened as the page starts: index.html loads this module `async`, so the
// open runs while the rest of the app is still being fetched, and store.js gets the same open connection.
// No imports: it must not wait for anything.
const DB_NAME = "outage-desk";
const VERSION = 2; // 2: callback attempts joined the records in the one outbox

let opening = null;

export function open() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const request = indexedDB.open(DB_NAME, VERSION);
      request.onupgradeneeded = (event) => {
        const db = request.result;
        if (event.oldVersion < 1) {
          const records = db.createObjectStore("records", { keyPath: "id" });
          records.createIndex("status", "status");
          records.createIndex("user_status", ["userId", "status"]);
          db.createObjectStore("meta", { keyPath: "key" });
          db.createObjectStore("forms", { keyPath: "key" }); // form definitions by "slug@version"
        }
        // Callback attempts waiting for the server: {id, callback_id, outcome, attempted_at, userId}.
        if (event.oldVersion < 2) db.createObjectStore("attempts", { keyPath: "id" });
      };
      request.onsuccess = () => {
        const db = request.result;
        db.onversionchange = () => { db.close(); opening = null; };
        resolve(db);
      };
      request.onerror = () => reject(request.error);
      request.onblocked = () => reject(new Error("IndexedDB is blocked by another tab"));
    });
  }
  return opening;
}

open().catch((error) => console.warn("IndexedDB", error)); // store.js's first use reports it again
