"""A test OpenTelemetry collector: takes OTLP/HTTP protobuf exports on /v1/traces and
/v1/metrics, decodes them with OpenTelemetry's own Python bindings (opentelemetry-proto), and
prints each as one JSON line on stdout: {"signal", "headers", "body"} (the body as protobuf's
JSON mapping, field names as in the .proto files). Anything it cannot decode is answered 400 and
printed as {"signal", "error"}. Prints `listening PORT` first."""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

KINDS = {
    "/v1/traces": ("traces", trace_service_pb2.ExportTraceServiceRequest,
                   trace_service_pb2.ExportTraceServiceResponse),
    "/v1/metrics": ("metrics", metrics_service_pb2.ExportMetricsServiceRequest,
                    metrics_service_pb2.ExportMetricsServiceResponse),
}


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        kind = KINDS.get(self.path)
        if kind is None:
            self.answer(404, b"")
            return
        signal, request_type, response_type = kind
        try:
            if self.headers.get("content-type") != "application/x-protobuf":
                raise ValueError(f"content-type {self.headers.get('content-type')}")
            message = request_type.FromString(body)
        except Exception as e:  # noqa: BLE001 - any failure is reported to the test
            print(json.dumps({"signal": signal, "error": str(e)}), flush=True)
            self.answer(400, b"")
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        decoded = MessageToDict(message, preserving_proto_field_name=True)
        print(json.dumps({"signal": signal, "headers": headers, "body": decoded}), flush=True)
        self.answer(200, response_type().SerializeToString())

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
