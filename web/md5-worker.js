// Ferry's upload page: the MD5 of a file, computed off the main thread.
//
// Browsers have no MD5 in Web Crypto, and Content-MD5 (the digest every S3-compatible bucket,
// B2 included, checks) needs one. The file is read in 4 MiB slices, so memory stays flat
// whatever its size. Message in: a File; messages out: {done, total} while hashing, then
// {md5: "<base64>"} or {error}.

const K = new Int32Array(64);
for (let i = 0; i < 64; i++) K[i] = Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) | 0;
const S = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
const SLICE = 4 * 1024 * 1024;

/** Folds the 64-byte block at `offset` of `view` into the state `h`. */
function block(h, view, offset) {
  const w = new Int32Array(16);
  for (let i = 0; i < 16; i++) w[i] = view.getInt32(offset + i * 4, true);
  let a = h[0], b = h[1], c = h[2], d = h[3];
  for (let i = 0; i < 64; i++) {
    let f, g;
    if (i < 16) { f = (b & c) | (~b & d); g = i; }
    else if (i < 32) { f = (d & b) | (~d & c); g = (5 * i + 1) & 15; }
    else if (i < 48) { f = b ^ c ^ d; g = (3 * i + 5) & 15; }
    else { f = c ^ (b | ~d); g = (7 * i) & 15; }
    const s = S[(i >> 4) * 4 + (i & 3)];
    const x = (a + f + K[i] + w[g]) | 0;
    a = d; d = c; c = b;
    b = (b + ((x << s) | (x >>> (32 - s)))) | 0;
  }
  h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
}

/** An incremental MD5 (RFC 1321). */
function md5() {
  const h = new Int32Array([0x67452301, 0xefcdab89 | 0, 0x98badcfe | 0, 0x10325476]);
  const pending = new Uint8Array(64);
  let pendingLength = 0;
  let length = 0;
  return {
    update(bytes) {
      length += bytes.length;
      let i = 0;
      if (pendingLength > 0) {
        const take = Math.min(64 - pendingLength, bytes.length);
        pending.set(bytes.subarray(0, take), pendingLength);
        pendingLength += take;
        i = take;
        if (pendingLength < 64) return;
        block(h, new DataView(pending.buffer), 0);
        pendingLength = 0;
      }
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (; i + 64 <= bytes.length; i += 64) block(h, view, i);
      pending.set(bytes.subarray(i), 0);
      pendingLength = bytes.length - i;
    },
    /** The digest, as base64 (what Content-MD5 carries). */
    base64() {
      const bits = length * 8;
      const tail = new Uint8Array(pendingLength < 56 ? 64 : 128);
      tail.set(pending.subarray(0, pendingLength));
      tail[pendingLength] = 0x80;
      const view = new DataView(tail.buffer);
      view.setUint32(tail.length - 8, bits >>> 0, true);
      view.setUint32(tail.length - 4, Math.floor(bits / 2 ** 32), true);
      for (let o = 0; o < tail.length; o += 64) block(h, view, o);
      const out = new Uint8Array(h.buffer);
      return btoa(String.fromCharCode(...out));
    },
  };
}

if (typeof self !== "undefined" && typeof self.postMessage === "function" && typeof window === "undefined") {
  self.onmessage = async (event) => {
    const file = event.data;
    try {
      const hash = md5();
      for (let offset = 0; offset < file.size; offset += SLICE) {
        hash.update(new Uint8Array(await file.slice(offset, offset + SLICE).arrayBuffer()));
        self.postMessage({ done: Math.min(offset + SLICE, file.size), total: file.size });
      }
      self.postMessage({ md5: hash.base64() });
    } catch (err) {
      self.postMessage({ error: String(err) });
    }
  };
}

if (typeof module !== "undefined") module.exports = { md5 };
