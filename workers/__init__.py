"""Celery workers and the job table.

Modules: ``settings`` (worker knobs), ``kinds`` (registry of job kinds), ``validation`` /
``extraction`` (the built-in kinds), ``problem_selection`` (a job's problems), ``jobs`` (job table:
keys, claims, progress, cancel), ``runner`` (process a job's items transactionally), ``submit``
(enqueue, inline runs, resume), ``celery_app`` (app, queues, routes, signals), ``tasks`` (the
chunk task) and ``cli`` (``mycelium jobs …`` and ``mycelium worker``).
"""
