"""De-aggregates Kinesis records with the AWS library aws-kinesis-agg (PyPI), as a Lambda
consumer would: an independent check of the gateway's KPL aggregates.

stdin: one JSON object per line, {"partition_key": str, "data": base64, "sequence_number": str}
stdout: one JSON object per user record, {"partition_key": str, "data": base64}, in order.
"""
import json
import sys

from aws_kinesis_agg.deaggregator import deaggregate_records


def main():
    events = []
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        events.append({
            "eventSource": "aws:kinesis",
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": r["partition_key"],
                "sequenceNumber": r["sequence_number"],
                "approximateArrivalTimestamp": 0,
                "data": r["data"],
            },
        })
    for user in deaggregate_records(events):
        k = user["kinesis"]
        data = k["data"]  # base64, as bytes or str depending on the library version
        if isinstance(data, bytes):
            data = data.decode("ascii")
        print(json.dumps({"partition_key": k["partitionKey"], "data": data}))


if __name__ == "__main__":
    main()
