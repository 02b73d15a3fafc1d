"""The gateway: one node's sync traffic and telemetry bridged to an MQTT broker, so that
partner sites far apart replicate with no central server of their own.

Topics, under ribat/<cell fingerprint>/:
    summary/<node fp>        retained: the node's sync summary (sync.hello), refreshed when
                             it changes: peers read heads, held entries, audit heads and
                             the hashes each asked of the other's audit log; stamped
                             ("sent") so that one a broker delivers late is not taken
    entry/<origin fp>/<seq>  retained, QoS 1: one sealed entry (ribat.entry), published by
                             the origin's own gateway only, so that a broker ACL can keep
                             anyone else from squatting an origin's topics; once expired,
                             replaced by its signed header alone (the content goes)
    telemetry/<node fp>      the node's status sample, each round

A node offline for days comes back, its gateway subscribes, and the broker hands it every
retained entry; the gateway gives the node those past its heads, in runs, as an import
(every check, every audit entry). The broker sees sealed entries and summaries only: it
can delay, reorder, duplicate or drop, and the node refuses anything forged or altered.
"""
