"use strict";
// Reading the google.rpc.ErrorInfo of a refused asyncflow call.
//
// A refused call carries, besides its status code and message, a trailer
// `grpc-status-details-bin`: a serialized google.rpc.Status whose `details`
// hold one google.rpc.ErrorInfo (domain "asyncflow", a reason such as
// "TASK_TYPE_NOT_FOUND", and metadata.field naming the request field at
// fault). @grpc/grpc-js hands the trailer over as a Buffer in err.metadata;
// decoding it takes the three standard messages below (the same field
// numbers as google/rpc/status.proto, google/rpc/error_details.proto and
// google/protobuf/any.proto), so no extra .proto files are needed.

const grpc = require("@grpc/grpc-js");
const protobuf = require("protobufjs");

const root = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Any: {
              fields: {
                type_url: { type: "string", id: 1 },
                value: { type: "bytes", id: 2 },
              },
            },
          },
        },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: "int32", id: 1 },
                message: { type: "string", id: 2 },
                details: { rule: "repeated", type: "google.protobuf.Any", id: 3 },
              },
            },
            ErrorInfo: {
              fields: {
                reason: { type: "string", id: 1 },
                domain: { type: "string", id: 2 },
                metadata: { keyType: "string", type: "string", id: 3 },
              },
            },
          },
        },
      },
    },
  },
});
const Status = root.lookupType("google.rpc.Status");
const ErrorInfo = root.lookupType("google.rpc.ErrorInfo");
const ERROR_INFO_URL = "type.googleapis.com/google.rpc.ErrorInfo";

/**
 * What a refused call says: {code: "NOT_FOUND", reason, field, domain, message}.
 * reason/field/domain are "" when the status has no ErrorInfo (e.g. a server
 * that cannot be reached, or a message over the size limit).
 */
function describeError(err) {
  const described = {
    code: grpc.status[err.code] ?? String(err.code),
    reason: "",
    field: "",
    domain: "",
    message: err.details ?? err.message,
  };
  const [raw] = err.metadata ? err.metadata.get("grpc-status-details-bin") : [];
  if (!raw) return described;
  const status = Status.decode(raw);
  for (const detail of status.details) {
    if (detail.type_url === ERROR_INFO_URL) {
      const info = ErrorInfo.decode(detail.value);
      described.reason = info.reason;
      described.domain = info.domain;
      described.field = info.metadata.field ?? "";
    }
  }
  return described;
}

module.exports = { describeError };
