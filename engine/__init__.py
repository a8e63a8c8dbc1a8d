"""The relay's engine: everything between the HTTP front doors and Notion.

Nothing here imports tornado.web; status codes are chosen only in handlers/errors.py.
"""
