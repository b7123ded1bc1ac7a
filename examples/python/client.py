"""Calls esign-evidence from Python through stubs generated from the contract.

Stubs: Debian's protoc and grpc_python_plugin (see examples/run.sh), into ./gen.
Runtime: Debian's python3-grpcio and python3-protobuf, with /usr/bin/python3.

1. e签宝's own request example is decoded from its JSON and sent; the eviPointId is
   printed.
2. A bad request is sent, and the google.rpc.BadRequest the server returns (in the
   grpc-status-details-bin trailer) is read field by field.

Usage: python3 client.py [host:port]   (default localhost:9090; the service in demo mode)
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402

from esign.evidence.v1 import evidence_pb2, evidence_pb2_grpc  # noqa: E402

SEED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "testdata", "seed_request.json")


def status_details(err):
    """Returns (ErrorInfo, BadRequest) from a gRPC error's rich status, either may be None."""
    info, bad_request = None, None
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        st = status_pb2.Status.FromString(value)
        for detail in st.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
    return info, bad_request


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else "localhost:9090"
    with grpc.insecure_channel(target) as channel:
        stub = evidence_pb2_grpc.EvidenceServiceStub(channel)

        # 1. The seed example, as e签宝 prints it (timeStamp as a string, enum names).
        with open(SEED, encoding="utf-8") as f:
            seed = json_format.Parse(f.read(), evidence_pb2.CreatePersonalEvidencePointRequest())
        res = stub.CreatePersonalEvidencePoint(seed, timeout=10)
        print("eviPointId:", res.evi_point_id)
        if not res.evi_point_id.startswith(("P", "H")):
            raise SystemExit("an eviPointId starts with P or H")

        # 2. A bad request: a mobile number that is not a mainland one, a wrong check digit.
        bad = evidence_pb2.CreatePersonalEvidencePointRequest()
        bad.CopyFrom(seed)
        bad.three_elements.mobile = "12345"
        bad.card_no = "130401199601018394"
        try:
            stub.CreatePersonalEvidencePoint(bad, timeout=10)
            raise SystemExit("the server accepted a bad request")
        except grpc.RpcError as err:
            info, bad_request = status_details(err)
            print("server said", err.code().name, "(%s)" % (info.reason if info else "no ErrorInfo"))
            fields = sorted(v.field for v in bad_request.field_violations) if bad_request else []
            for v in bad_request.field_violations if bad_request else []:
                print("  %s: %s" % (v.field, v.description))
            if err.code() != grpc.StatusCode.INVALID_ARGUMENT or fields != ["cardNo", "threeElements.mobile"]:
                raise SystemExit("unexpected answer: %s %s" % (err.code(), fields))
    print("python example passed")


if __name__ == "__main__":
    main()
