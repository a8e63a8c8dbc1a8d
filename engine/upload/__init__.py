"""The upload wing: an upload's life from "I have N bytes" to "stored in Notion".

Rooms, each importing only the ones below it (a test checks there is no circle):

    service      the facade the handlers and server.py call
    creation     validation, the workspace's limit, the Notion file upload made exactly once
    registry     the uploads this instance holds, locks, hand-off, Redis amnesia, expiry sweep
    intake       tus offset rules and the Writer: a request's bytes into the spool
    pipeline     part → scheduler → send → checkpoint → durable → complete → attach
    finishing    what Notion holds: single_part outcome, complete, attach, expiry
    once         non-idempotent Notion calls decided from Notion's state after an unknown outcome
    records      the record saver (off the request path) and tombstones
    scheduler    fair round-robin of part sends under the adaptive limit
    session      the record, the states and their transitions, the live progress
    spool        part files on disk, written exactly
    partplan     how a size is cut into Notion parts
    interfaces   the Protocols between the wing and Redis, locks and Notion
"""
