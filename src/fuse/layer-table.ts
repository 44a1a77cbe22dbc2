/**
 * A layer's index as the flat, immutable table the native backend serves from. The index already is
 * that table (src/formats/index-table.ts: layout, mirrored and checked by native/src/table.h), built
 * once per layer by the overlay view: this returns the very buffer, no copy and no second encoding.
 */
import type { LayerIndex } from '../formats/model.js';

export function encodeLayerTable(index: LayerIndex): Buffer {
  return index.table;
}
