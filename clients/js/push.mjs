/*! push.mjs: the ES module entry of push.js (the same code: it loads ./push.js).
 *  import { PushClient } from '/push.mjs'; Documentation: docs/client.md */
import './push.js';

export const PushClient = globalThis.PushClient;
export default PushClient;
