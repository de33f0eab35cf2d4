// Codec benchmark: protobuf-es's generic fromBinary/toBinary against the specialised hot-path
// codec (src/protocol/fast-proto.ts) on the frames an upload exchange moves, alternated A B A B.
//   bun scripts/bench-codec.ts [rounds]
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { NetFsProtocolProtoSchema } from "../src/gen/netfs_pb";
import { decodeProto, encodeProtoFrame } from "../src/protocol/fast-proto";

const rounds = Number(process.argv[2] ?? 4);
const N = 300_000;
const request = encodeProtoFrame({ operation: 3, key: "bench_mark_file_12345", size: 5120 }).subarray(4);
const reply = { operation: 4, key: "bench_mark_file_12345", message: "START" };

const variants: Record<string, { decode: () => void; encode: () => void }> = {
  "protobuf-es": {
    decode: () => void fromBinary(NetFsProtocolProtoSchema, request),
    encode: () =>
      void toBinary(
        NetFsProtocolProtoSchema,
        create(NetFsProtocolProtoSchema, { Version: "0001", Magic: 0x12345, Appid: 0x12345, Operation: reply.operation, Checksum: reply.key, Message: reply.message }),
      ),
  },
  "fast-proto": {
    decode: () => void decodeProto(request),
    encode: () => void encodeProtoFrame(reply),
  },
};

const results: Record<string, { decode: number[]; encode: number[] }> = {};
for (let r = 0; r < rounds; r++) {
  for (const [name, v] of Object.entries(variants)) {
    const res = (results[name] ??= { decode: [], encode: [] });
    let t = performance.now();
    for (let i = 0; i < N; i++) v.decode();
    res.decode.push(((performance.now() - t) * 1000) / N);
    t = performance.now();
    for (let i = 0; i < N; i++) v.encode();
    res.encode.push(((performance.now() - t) * 1000) / N);
  }
}
// The first round warms the JIT: report the rest.
const mean = (xs: number[]) => xs.slice(1).reduce((a, b) => a + b, 0) / Math.max(1, xs.length - 1);
for (const [name, res] of Object.entries(results)) {
  console.log(`${name.padEnd(12)} decode ${mean(res.decode).toFixed(3)} us/frame   encode ${mean(res.encode).toFixed(3)} us/frame`);
}
const [a, b] = [results["protobuf-es"]!, results["fast-proto"]!];
console.log(`fast-proto vs protobuf-es: decode ${(mean(a.decode) / mean(b.decode)).toFixed(1)}x faster, encode ${(mean(a.encode) / mean(b.encode)).toFixed(1)}x faster`);
