"""A small multi-tenant project-tracking and billing service.

Organisations, users and roles live in the platform database; each organisation's
projects, tasks, invoices and audit events live in the database of its region.
"""
