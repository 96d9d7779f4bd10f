"""The sample e-commerce application built on the toolkit: its schema files, models, repositories,
order placement, seed data, user activity in MongoDB and the demo. The toolkit never imports it.
"""
