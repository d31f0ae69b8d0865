"""The hand-written scenarios of the Postman collection, in the order newman runs them.

Each folder creates what it needs (names and business keys carry the run id ``{{run_id}}`` /
``{{RUN_ID}}``, so a collection runs again against the same database), chains requests through
collection variables set from earlier responses (ids, ETags), and cleans up where the API lets
it. Every request names its ``operationId``; ``postman/build.py`` adds the status, header and body
checks from the spec. An operation of the served spec that no folder calls gets a generated
request in the last folder (see ``build.py``): write a scenario step for it here.
"""

from __future__ import annotations

from postman.model import Folder, Step

MERGE_PATCH = "application/merge-patch+json"
ADDRESS = {"street": "Marktplatz 1", "postal_code": "80331", "city": "München", "country": "DE"}
NIL_UUID = "00000000-0000-4000-8000-000000000000"


def has_id(list_var: str = "items", variable: str = "") -> str:
    """JavaScript: the page's ``items`` contain the id in the collection variable."""
    return (f'pm.expect(body.{list_var}.map(function (x) {{ return x.id; }}))'
            f'.to.include(pm.collectionVariables.get("{variable}"));')


HEALTH = Folder("Health", "Liveness and readiness probes, and the Prometheus metrics: no token needed.", [
    Step("health.live", "Liveness", role=None,
         prerequest=[
             "// A new run id for every run of the collection: business keys stay unique.",
             'const runId = (Date.now().toString(36) + Math.random().toString(36).slice(2)).slice(-8);',
             'pm.collectionVariables.set("run_id", runId);',
             'pm.collectionVariables.set("RUN_ID", runId.toUpperCase());',
         ],
         checks=[("the process is up", 'pm.expect(body.status).to.eql("UP");')]),
    Step("health.ready", "Readiness", role=None,
         checks=[("database and migrations are ready", 'pm.expect(body.status).to.eql("UP");')]),
    Step("metrics.metrics", "Prometheus metrics", role=None,
         checks=[("request counts per operation are exported",
                  'pm.expect(pm.response.text()).to.include("crm_http_requests_total{operation=");')]),
])

CHAINS = Folder("Chains", "Create, list, read, change and delete a restaurant chain.", [
    Step("chains.create_chain", "Create a chain", expect=201,
         body={"name": "Postman Kette {{run_id}}", "description": "Created by the Postman collection"},
         save={"chain_id": "body.id", "chain_etag": "etag"},
         checks=[("Location names the new chain",
                  'pm.expect(pm.response.headers.get("Location")).to.include(body.id);')]),
    Step("chains.list_chains", "List chains filtered by name", query=[("q", "{{run_id}}"), ("limit", "10")],
         checks=[("the new chain is listed", has_id(variable="chain_id"))]),
    Step("chains.get_chain", "Get the chain",
         checks=[("it is the chain", 'pm.expect(body.id).to.eql(pm.collectionVariables.get("chain_id"));')]),
    Step("chains.get_chain", "Get the chain again with If-None-Match", headers={"If-None-Match": "{{chain_etag}}"},
         expect=304),
    Step("chains.update_chain", "Change the chain", headers={"If-Match": "{{chain_etag}}"},
         content_type=MERGE_PATCH, body={"description": "Changed by the Postman collection"},
         save={"chain_etag": "etag"},
         checks=[("the description changed",
                  'pm.expect(body.description).to.eql("Changed by the Postman collection");')]),
    Step("chains.delete_chain", "Delete the chain", headers={"If-Match": "{{chain_etag}}"}, expect=204),
    Step("chains.get_chain", "The deleted chain is gone", expect=404, problem="/problems/not-found"),
])

CUSTOMERS = Folder("Customers and contacts", "A customer's life: create, find, change, contacts, archive.", [
    Step("customers.create_customer", "Create a customer", role="sales_rep", expect=201,
         body={"customer_number": "PM-{{RUN_ID}}-1", "name": "Gasthaus Postman {{run_id}}", "type": "RESTAURANT",
               "status": "PROSPECT", "owner": "anna", "address": ADDRESS},
         save={"customer_id": "body.id", "customer_etag": "etag"},
         checks=[("the customer is a prospect", 'pm.expect(body.status).to.eql("PROSPECT");')]),
    Step("customers.list_customers", "List customers filtered by name", role="sales_rep",
         query=[("q", "{{run_id}}"), ("type", "RESTAURANT"), ("limit", "10")],
         checks=[("the new customer is listed", has_id(variable="customer_id"))]),
    Step("customers.get_customer", "Get the customer", role="sales_rep",
         checks=[("it is the customer", 'pm.expect(body.customer_number).to.eql("PM-" + '
                  'pm.collectionVariables.get("RUN_ID") + "-1");')]),
    Step("customers.update_customer", "Make the customer active", role="sales_rep",
         headers={"If-Match": "{{customer_etag}}"}, content_type=MERGE_PATCH, body={"status": "ACTIVE"},
         save={"customer_etag": "etag"},
         checks=[("the status changed", 'pm.expect(body.status).to.eql("ACTIVE");')]),
    Step("contacts.create_contact", "Add a contact", role="sales_rep", expect=201,
         body={"first_name": "Lena", "last_name": "Koch", "job_role": "HEAD_CHEF",
               "email": "lena.koch@example.com", "phone": "+49 89 1234567"},
         save={"contact_id": "body.id", "contact_etag": "etag"}),
    Step("contacts.list_contacts", "List the customer's contacts", role="sales_rep",
         checks=[("the contact is listed", has_id(variable="contact_id"))]),
    Step("contacts.get_contact", "Get the contact", role="sales_rep",
         checks=[("it is Lena Koch", 'pm.expect(body.last_name).to.eql("Koch");')]),
    Step("contacts.update_contact", "Change the contact (null clears the phone)", role="sales_rep",
         headers={"If-Match": "{{contact_etag}}"}, content_type=MERGE_PATCH, body={"phone": None},
         save={"contact_etag": "etag"},
         checks=[("the phone is cleared", "pm.expect(body.phone).to.eql(null);")]),
    Step("contacts.delete_contact", "Delete the contact", role="sales_rep",
         headers={"If-Match": "{{contact_etag}}"}, expect=204),
    Step("customers.create_customer", "Create a customer to archive", expect=201,
         body={"customer_number": "PM-{{RUN_ID}}-2", "name": "Kantine Postman {{run_id}}", "type": "CANTEEN"},
         save={"archive_customer_id": "body.id", "archive_customer_etag": "etag"}),
    Step("customers.delete_customer", "Archive the customer", path={"customer_id": "{{archive_customer_id}}"},
         headers={"If-Match": "{{archive_customer_etag}}"}, expect=204),
    Step("customers.get_customer", "The archived customer is kept", path={"customer_id": "{{archive_customer_id}}"},
         checks=[("its status is ARCHIVED", 'pm.expect(body.status).to.eql("ARCHIVED");')]),
])

FIELDS = Folder("Custom fields and search", "Define a custom field, give the customer a value, search.", [
    Step("fields.create_field_definition", "Define an ENUM field", expect=201,
         body={"key": "pm_{{run_id}}_cuisine", "label": "Küche (Postman)", "data_type": "ENUM",
               "options": ["ITALIAN", "THAI", "GERMAN"], "description": "Created by the Postman collection"},
         save={"field_key": "body.key", "field_etag": "etag"}),
    Step("fields.list_field_definitions", "List field definitions", query=[("limit", "200")],
         checks=[("the new field is listed", 'pm.expect(body.items.map(function (x) { return x.key; }))'
                  '.to.include(pm.collectionVariables.get("field_key"));')]),
    Step("fields.get_field_definition", "Get the field definition",
         checks=[("it is an ENUM", 'pm.expect(body.data_type).to.eql("ENUM");')]),
    Step("fields.update_field_definition", "Change the label", headers={"If-Match": "{{field_etag}}"},
         content_type=MERGE_PATCH, body={"label": "Küche"}, save={"field_etag": "etag"},
         checks=[("the label changed", 'pm.expect(body.label).to.eql("Küche");')]),
    Step("fields.get_customer_fields", "Get the customer's field values", role="sales_rep",
         save={"customer_fields_etag": "etag"}),
    Step("fields.update_customer_fields", "Set the customer's value", role="sales_rep",
         headers={"If-Match": "{{customer_fields_etag}}"}, content_type=MERGE_PATCH,
         body='{\n  "{{field_key}}": "THAI"\n}',
         save={"customer_fields_etag": "etag"},
         checks=[("the value is stored",
                  'pm.expect(JSON.stringify(body)).to.include(\'"THAI"\');')]),
    Step("fields.get_customer_fields", "Read the value back", role="sales_rep",
         checks=[("the value is there", 'pm.expect(JSON.stringify(body)).to.include(\'"THAI"\');')]),
    Step("search.search_customers", "Search customers by customer number", role="sales_rep",
         body={"filter": {"all": [{"field": "customer_number", "op": "starts_with", "value": "PM-{{RUN_ID}}"},
                                  {"field": "status", "op": "eq", "value": "ACTIVE"}]},
               "sort": [{"field": "name", "direction": "asc"}], "limit": 10},
         checks=[("the active customer is found", has_id(variable="customer_id"))]),
    Step("fields.delete_field_definition", "Archive the field definition", headers={"If-Match": "{{field_etag}}"},
         expect=204),
])

PRODUCTS = Folder("Products", "The Cook&Fresh® catalogue: add, find, read and change a product.", [
    Step("products.create_product", "Add a product", expect=201,
         body={"sku": "PM-{{RUN_ID}}-P1", "name": "Kartoffelcremesuppe (Postman)", "category": "SOUPS",
               "pack_size": 2.5, "unit": "KG", "allergens": ["CELERY", "MILK"], "diet_tags": ["VEGETARIAN"],
               "max_sample_quantity": 5},
         save={"product_id": "body.id", "product_etag": "etag"}),
    Step("products.list_products", "List products available as samples",
         query=[("q", "Postman"), ("sample_available", "true"), ("limit", "50")]),
    Step("products.get_product", "Get the product",
         checks=[("it is the soup", 'pm.expect(body.category).to.eql("SOUPS");')]),
    Step("products.update_product", "Change the product", headers={"If-Match": "{{product_etag}}"},
         content_type=MERGE_PATCH, body={"description": "Cremig, mit Lauch."}, save={"product_etag": "etag"},
         checks=[("the description changed", 'pm.expect(body.description).to.eql("Cremig, mit Lauch.");')]),
])

SHIPMENT_ITEMS_JS = [
    "// The shipment names every item of the request with its lot number and best-before date.",
    'const itemIds = JSON.parse(pm.collectionVariables.get("sample_item_ids") || "[]");',
    'pm.collectionVariables.set("shipment_items", JSON.stringify(itemIds.map(function (id, n) {',
    '    return { item_id: id, lot_number: "L2409-" + (n + 1), best_before: "2031-03-31" };',
    "})));",
]

SAMPLES = Folder(
    "Sample lifecycle",
    "A Cook&Fresh® sample request from the draft to the kitchen's feedback: create → items → submit "
    "(sales rep) → approve (sales manager) → ship → deliver (fulfilment partner, role integration) → "
    "feedback (sales rep) → closed.",
    [
        Step("customers.create_customer", "Setup: an active customer for the samples", role="sales_rep", expect=201,
             body={"customer_number": "PM-{{RUN_ID}}-3", "name": "Hotel Sonne Postman {{run_id}}", "type": "HOTEL",
                   "status": "ACTIVE", "address": ADDRESS},
             save={"sample_customer_id": "body.id"}),
        Step("products.create_product", "Setup: a soup", expect=201,
             body={"sku": "PM-{{RUN_ID}}-S1", "name": "Tomatensuppe (Postman)", "category": "SOUPS",
                   "pack_size": 2.5, "unit": "KG", "max_sample_quantity": 3},
             save={"sample_product_1": "body.id"}),
        Step("products.create_product", "Setup: a sauce", expect=201,
             body={"sku": "PM-{{RUN_ID}}-S2", "name": "Sauce Hollandaise (Postman)", "category": "SAUCES",
                   "pack_size": 1, "unit": "L", "max_sample_quantity": 5},
             save={"sample_product_2": "body.id"}),
        Step("samples.create_sample_request", "Create a draft", role="sales_rep", expect=201,
             body={"customer_id": "{{sample_customer_id}}", "purpose": "Neue Herbstkarte",
                   "items": [{"product_id": "{{sample_product_1}}", "quantity": 2}]},
             save={"sample_request_id": "body.id", "sample_etag": "etag"},
             checks=[("it is a draft addressed to the customer",
                      'pm.expect(body.status).to.eql("DRAFT");\n'
                      'pm.expect(body.next_statuses).to.include("REQUESTED");\n'
                      'pm.expect(body.delivery_address.city).to.eql("München");')]),
        Step("samples.add_sample_item", "Add a second item", role="sales_rep", expect=201,
             body={"product_id": "{{sample_product_2}}", "quantity": 1},
             save={"sample_item_id": "body.id"}),
        Step("samples.list_sample_items", "List the items", role="sales_rep",
             checks=[("two items", "pm.expect(body.items).to.have.lengthOf(2);")]),
        Step("samples.get_sample_item", "Get the second item", role="sales_rep",
             path={"item_id": "{{sample_item_id}}"},
             checks=[("it is the sauce",
                      'pm.expect(body.product_id).to.eql(pm.collectionVariables.get("sample_product_2"));')]),
        Step("samples.get_sample_request", "Get the draft with its items", role="sales_rep",
             save={"sample_etag": "etag"},
             checks=[("two items", "pm.expect(body.items).to.have.lengthOf(2);")]),
        Step("samples.update_sample_request", "Change the draft", role="sales_rep",
             headers={"If-Match": "{{sample_etag}}"}, content_type=MERGE_PATCH,
             body={"purpose": "Herbstkarte: Suppe und Sauce", "delivery_address": {"name": "Küche Hotel Sonne"}},
             save={"sample_etag": "etag"},
             checks=[("the address is merged", 'pm.expect(body.delivery_address.name).to.eql("Küche Hotel Sonne");\n'
                      'pm.expect(body.delivery_address.city).to.eql("München");')]),
        Step("samples.list_sample_requests", "List the customer's requests", role="sales_rep",
             query=[("customer_id", "{{sample_customer_id}}"), ("status", "DRAFT")],
             checks=[("the draft is listed", has_id(variable="sample_request_id"))]),
        Step("samples.transition_sample_request", "Submit (sales rep)", role="sales_rep",
             headers={"If-Match": "{{sample_etag}}"}, body={"to": "REQUESTED"}, save={"sample_etag": "etag"},
             checks=[("requested", 'pm.expect(body.status).to.eql("REQUESTED");\n'
                      "pm.expect(body.submitted_at).to.be.a('string');")]),
        Step("samples.transition_sample_request", "Approve (sales manager)", role="sales_manager",
             headers={"If-Match": "{{sample_etag}}"}, body={"to": "APPROVED", "reason": "Passt zur Herbstkarte"},
             save={"sample_etag": "etag",
                   "sample_item_ids": "JSON.stringify(body.items.map(function (i) { return i.id; }))"},
             checks=[("approved", 'pm.expect(body.status).to.eql("APPROVED");\n'
                      'pm.expect(body.decision.outcome).to.eql("APPROVED");')]),
        Step("samples.transition_sample_request", "Ship (fulfilment partner)", role="integration",
             headers={"If-Match": "{{sample_etag}}"}, prerequest=SHIPMENT_ITEMS_JS,
             body='{\n  "to": "SHIPPED",\n  "shipment": {\n    "carrier": "DHL",\n'
                  '    "tracking_number": "00340434161094042557",\n    "items": {{shipment_items}}\n  }\n}',
             save={"sample_etag": "etag"},
             checks=[("shipped with lot numbers", 'pm.expect(body.status).to.eql("SHIPPED");\n'
                      'pm.expect(body.shipment.carrier).to.eql("DHL");\n'
                      "body.items.forEach(function (i) { pm.expect(i.lot_number).to.match(/^L2409-/); });")]),
        Step("samples.transition_sample_request", "Deliver (fulfilment partner)", role="integration",
             headers={"If-Match": "{{sample_etag}}"}, body={"to": "DELIVERED"}, save={"sample_etag": "etag"},
             checks=[("delivered", 'pm.expect(body.status).to.eql("DELIVERED");\n'
                      'pm.expect(body.next_statuses).to.eql(["FEEDBACK_RECEIVED"]);')]),
        Step("samples.put_sample_feedback", "Feedback on the second item", role="sales_rep",
             path={"item_id": "{{sample_item_id}}"},
             body={"rating": 4, "taste": 5, "handling": 4, "price_perception": "ACCEPTABLE",
                   "listing_decision": "LISTED", "comment": "Schnell zubereitet"},
             checks=[("the feedback is stored", 'pm.expect(body.feedback.listing_decision).to.eql("LISTED");')]),
        Step("samples.put_sample_feedback", "Feedback on the first item", role="sales_rep",
             path={"item_id": "{{sample_first_item_id}}"},
             prerequest=['const ids = JSON.parse(pm.collectionVariables.get("sample_item_ids"));',
                         'pm.collectionVariables.set("sample_first_item_id", ids.filter(function (id) {',
                         '    return id !== pm.collectionVariables.get("sample_item_id"); })[0]);'],
             body={"rating": 2, "listing_decision": "NOT_LISTED", "comment": "Zu salzig"}),
        Step("samples.get_sample_request", "All feedback in: FEEDBACK_RECEIVED", role="sales_rep",
             save={"sample_etag": "etag"},
             checks=[("moved by itself", 'pm.expect(body.status).to.eql("FEEDBACK_RECEIVED");\n'
                      'pm.expect(body.next_statuses).to.eql(["CLOSED"]);')]),
        Step("samples.transition_sample_request", "Close (sales rep)", role="sales_rep",
             headers={"If-Match": "{{sample_etag}}"}, body={"to": "CLOSED"},
             checks=[("closed", 'pm.expect(body.status).to.eql("CLOSED");\n'
                      "pm.expect(body.next_statuses).to.eql([]);")]),
        Step("samples.list_sample_history", "The history of every move", role="sales_rep",
             checks=[("seven entries from the draft to closed",
                      'pm.expect(body.items.map(function (e) { return e.to; })).to.eql(["DRAFT", "REQUESTED", '
                      '"APPROVED", "SHIPPED", "DELIVERED", "FEEDBACK_RECEIVED", "CLOSED"]);\n'
                      "pm.expect(body.items[0].from).to.eql(null);")]),
    ],
)

DRAFTS = Folder("Sample drafts: remove an item, delete a draft", "Only drafts change; a draft can be deleted.", [
    Step("samples.create_sample_request", "Create a draft with two items", role="sales_rep", expect=201,
         body={"customer_id": "{{sample_customer_id}}",
               "items": [{"product_id": "{{sample_product_1}}", "quantity": 1},
                         {"product_id": "{{sample_product_2}}", "quantity": 1}]},
         save={"draft_id": "body.id", "draft_item_id": "body.items[1].id", "draft_item_etag": "body.items[1].etag"}),
    Step("samples.remove_sample_item", "Remove the second item", role="sales_rep",
         path={"sample_request_id": "{{draft_id}}", "item_id": "{{draft_item_id}}"},
         headers={"If-Match": "{{draft_item_etag}}"}, expect=204),
    Step("samples.get_sample_request", "The draft keeps one item", role="sales_rep",
         path={"sample_request_id": "{{draft_id}}"}, save={"draft_etag": "etag"},
         checks=[("one item", "pm.expect(body.items).to.have.lengthOf(1);")]),
    Step("samples.delete_sample_request", "Delete the draft", role="sales_rep",
         path={"sample_request_id": "{{draft_id}}"}, headers={"If-Match": "{{draft_etag}}"}, expect=204),
    Step("samples.get_sample_request", "The deleted draft is gone", role="sales_rep",
         path={"sample_request_id": "{{draft_id}}"}, expect=404, problem="/problems/not-found"),
])

ACTIVITIES = Folder("Activities and the timeline", "Log a call with the customer, change it, see it on the timeline.", [
    Step("activities.create_activity", "Log a call", role="sales_rep", expect=201,
         prerequest=["// A call an hour ago, with a follow-up in a week.",
                     "const hour = 3600 * 1000;",
                     "pm.collectionVariables.set('call_at', new Date(Date.now() - hour).toISOString());",
                     "pm.collectionVariables.set('follow_up_at', new Date(Date.now() + 168 * hour).toISOString());"],
         body={"type": "CALL", "customer_id": "{{customer_id}}", "occurred_at": "{{call_at}}",
               "subject": "Herbstkarte besprochen", "outcome": "POSITIVE", "direction": "OUTBOUND",
               "duration_seconds": 300, "reached": True, "follow_up_at": "{{follow_up_at}}"},
         save={"activity_id": "body.id", "activity_etag": "etag"},
         checks=[("a done call", 'pm.expect(body.type).to.eql("CALL");\npm.expect(body.status).to.eql("DONE");')]),
    Step("activities.list_activities", "List the customer's activities", role="sales_rep",
         query=[("customer_id", "{{customer_id}}"), ("limit", "10")],
         checks=[("the call is listed", has_id(variable="activity_id"))]),
    Step("activities.get_activity", "Get the call", role="sales_rep",
         checks=[("it is the call", 'pm.expect(body.subject).to.eql("Herbstkarte besprochen");')]),
    Step("activities.update_activity", "Add notes", role="sales_rep", headers={"If-Match": "{{activity_etag}}"},
         content_type=MERGE_PATCH, body={"notes": "Probe der Tomatensuppe vereinbart."},
         save={"activity_etag": "etag"},
         checks=[("the notes are stored", 'pm.expect(body.notes).to.eql("Probe der Tomatensuppe vereinbart.");')]),
    Step("activities.list_customer_timeline", "The customer's timeline", role="sales_rep",
         checks=[("the call is on it",
                  'pm.expect(body.items.map(function (e) { return e.kind; })).to.include("ACTIVITY");')]),
    Step("activities.delete_activity", "Delete the call", role="sales_rep", headers={"If-Match": "{{activity_etag}}"},
         expect=204),
])

EVENTS = Folder("Events and checkpoints", "Read the event feed and keep a consumer's checkpoint (role integration).", [
    Step("events.list_events", "Read the feed", role="integration", query=[("after", "0"), ("limit", "5")],
         save={"feed_next_after": "body.next_after"},
         checks=[("positions ascend", "const p = body.items.map(function (e) { return e.position; });\n"
                  "pm.expect(p.slice().sort(function (a, b) { return a - b; })).to.eql(p);\n"
                  "pm.expect(body.items.length).to.be.at.most(5);")]),
    Step("events.get_checkpoint", "No checkpoint yet", role="integration",
         path={"consumer_name": "postman-{{run_id}}"}, expect=404, problem="/problems/not-found"),
    Step("events.put_checkpoint", "Store the checkpoint", role="integration", expect=201,
         path={"consumer_name": "postman-{{run_id}}"}, body='{\n  "position": {{feed_next_after}}\n}',
         save={"checkpoint_etag": "etag"}),
    Step("events.get_checkpoint", "Read the checkpoint", role="integration",
         path={"consumer_name": "postman-{{run_id}}"}, save={"checkpoint_etag": "etag"},
         checks=[("it holds the position",
                  'pm.expect(body.position).to.eql(Number(pm.collectionVariables.get("feed_next_after")));')]),
    Step("events.put_checkpoint", "Moving it needs If-Match", role="integration", expect=428,
         path={"consumer_name": "postman-{{run_id}}"}, body={"position": 1}, problem="/problems/if-match-required"),
    Step("events.put_checkpoint", "Move the checkpoint", role="integration",
         path={"consumer_name": "postman-{{run_id}}"}, headers={"If-Match": "{{checkpoint_etag}}"},
         body='{\n  "position": {{feed_next_after}}\n}'),
])

WEBHOOKS = Folder("Webhooks", "A webhook subscription (inactive, so nothing is sent), its deliveries, redelivery.", [
    Step("webhooks.create_subscription", "Create a subscription", expect=201,
         body={"url": "{{webhook_url}}", "event_types": ["sample_request.*", "customer.created"],
               "description": "Postman {{run_id}}", "active": False},
         save={"subscription_id": "body.id", "subscription_etag": "etag"},
         checks=[("the secret is shown once", "pm.expect(body.secret).to.be.a('string');")]),
    Step("webhooks.list_subscriptions", "List subscriptions", query=[("limit", "200")],
         checks=[("the subscription is listed", has_id(variable="subscription_id"))]),
    Step("webhooks.get_subscription", "Get the subscription",
         checks=[("no secret", "pm.expect(body).to.not.have.property('secret');")]),
    Step("webhooks.update_subscription", "Change the subscription", headers={"If-Match": "{{subscription_etag}}"},
         content_type=MERGE_PATCH, body={"description": "Postman {{run_id}} (changed)"},
         save={"subscription_etag": "etag"}),
    Step("webhooks.list_deliveries", "List its deliveries",
         checks=[("none: it is inactive", "pm.expect(body.items).to.eql([]);")]),
    Step("webhooks.redeliver", "Requeue dead-lettered deliveries", body={}, expect=202,
         checks=[("nothing to requeue", "pm.expect(body.requeued).to.eql(0);")]),
    Step("webhooks.delete_subscription", "Delete the subscription", headers={"If-Match": "{{subscription_etag}}"},
         expect=204),
])

SKIP_WITHOUT_FLAG = ["// Flags come and go with migrations: without one there is nothing to read or switch.",
                     "if (!pm.collectionVariables.get('flag_key')) { pm.execution.skipRequest(); }"]

FLAGS = Folder("Feature flags", "Read the flags and switch one to the state it has (admin): nothing changes.", [
    Step("feature_flags.list_feature_flags", "List the flags", query=[("limit", "200")],
         save={"flag_key": "body.items.length ? body.items[0].key : ''",
               "flag_enabled": "body.items.length ? String(body.items[0].enabled) : ''"}),
    Step("feature_flags.get_feature_flag", "Get the first flag", prerequest=SKIP_WITHOUT_FLAG,
         save={"flag_etag": "etag"},
         checks=[("it is the flag", 'pm.expect(body.key).to.eql(pm.collectionVariables.get("flag_key"));')]),
    Step("feature_flags.update_feature_flag", "Switch it to the state it has", prerequest=SKIP_WITHOUT_FLAG,
         headers={"If-Match": "{{flag_etag}}"}, content_type=MERGE_PATCH, body='{\n  "enabled": {{flag_enabled}}\n}',
         checks=[("unchanged", 'pm.expect(String(body.enabled)).to.eql(pm.collectionVariables.get("flag_enabled"));')]),
])

CONCURRENCY = Folder(
    "Concurrency: ETag, If-Match, If-None-Match",
    "Optimistic locking: a change without If-Match is 428, with a stale ETag 412 (naming the current one); "
    "a GET with the current ETag in If-None-Match is 304.",
    [
        Step("customers.create_customer", "Create a customer to change concurrently", expect=201,
             body={"customer_number": "PM-{{RUN_ID}}-4", "name": "Bistro Postman {{run_id}}", "type": "RESTAURANT"},
             save={"lock_customer_id": "body.id", "lock_etag_1": "etag"}),
        Step("customers.get_customer", "Not modified", path={"customer_id": "{{lock_customer_id}}"},
             headers={"If-None-Match": "{{lock_etag_1}}"}, expect=304,
             checks=[("no body", "pm.expect(pm.response.text()).to.eql('');")]),
        Step("customers.update_customer", "Change without If-Match", path={"customer_id": "{{lock_customer_id}}"},
             content_type=MERGE_PATCH, body={"owner": "lena"}, expect=428, problem="/problems/if-match-required"),
        Step("customers.update_customer", "Change with the current ETag", path={"customer_id": "{{lock_customer_id}}"},
             headers={"If-Match": "{{lock_etag_1}}"}, content_type=MERGE_PATCH, body={"owner": "lena"},
             save={"lock_etag_2": "etag"},
             checks=[("a new ETag", 'pm.expect(etag).to.not.eql(pm.collectionVariables.get("lock_etag_1"));')]),
        Step("customers.update_customer", "Change with the stale ETag", path={"customer_id": "{{lock_customer_id}}"},
             headers={"If-Match": "{{lock_etag_1}}"}, content_type=MERGE_PATCH, body={"owner": "tom"},
             expect=412, problem="/problems/etag-mismatch",
             checks=[("the problem names the current ETag",
                      'pm.expect(body.current_etag).to.eql(pm.collectionVariables.get("lock_etag_2"));')]),
        Step("customers.get_customer", "The stale change was not applied", path={"customer_id": "{{lock_customer_id}}"},
             checks=[("owner is lena", 'pm.expect(body.owner).to.eql("lena");')]),
        Step("customers.delete_customer", "Archive without If-Match", path={"customer_id": "{{lock_customer_id}}"},
             expect=428, problem="/problems/if-match-required"),
        Step("customers.delete_customer", "Archive with the stale ETag", path={"customer_id": "{{lock_customer_id}}"},
             headers={"If-Match": "{{lock_etag_1}}"}, expect=412, problem="/problems/etag-mismatch"),
        Step("samples.transition_sample_request", "A transition without If-Match", role="sales_rep",
             body={"to": "CANCELLED", "reason": "test"}, expect=428, problem="/problems/if-match-required"),
    ],
)

PAGE_SIZE = 2
PAGE_CUSTOMERS = 5

PAGINATION = Folder(
    "Pagination walk",
    f"Create {PAGE_CUSTOMERS} customers, then walk the list {PAGE_SIZE} at a time by `next_cursor` until it is "
    "null: every customer exactly once, in name order. A cursor used with other filters is 400.",
    [
        Step("customers.create_customer", "Create the customers to page through", expect=201,
             prerequest=["const n = Number(pm.collectionVariables.get('page_n') || 0) + 1;",
                         "pm.collectionVariables.set('page_n', n);"],
             body={"customer_number": "PM-{{RUN_ID}}-P{{page_n}}", "name": "Pagina {{run_id}} {{page_n}}",
                   "type": "CATERING"},
             script=["// Loop until all customers exist, then go on.",
                     f"if (Number(pm.collectionVariables.get('page_n')) < {PAGE_CUSTOMERS}) {{",
                     "    pm.execution.setNextRequest(pm.info.requestName);",
                     "} else {",
                     "    pm.collectionVariables.unset('page_n');",
                     "    pm.collectionVariables.set('page_cursor', '');",
                     "    pm.collectionVariables.set('page_seen', '[]');",
                     "    pm.collectionVariables.set('page_count', 0);",
                     "}"]),
        Step("customers.list_customers", "Walk the pages",
             query=[("q", "Pagina {{run_id}}"), ("limit", str(PAGE_SIZE))],
             prerequest=["// Continue from the previous page's next_cursor.",
                         "const cursor = pm.collectionVariables.get('page_cursor');",
                         "if (cursor) { pm.request.url.query.add({ key: 'cursor', value: cursor }); }"],
             checks=[("a page holds at most the limit", f"pm.expect(body.items.length).to.be.at.most({PAGE_SIZE});"),
                     ("in name order", "const names = body.items.map(function (c) { return c.name; });\n"
                      "pm.expect(names.slice().sort()).to.eql(names);")],
             script=["const seen = JSON.parse(pm.collectionVariables.get('page_seen') || '[]')",
                     "    .concat(body.items.map(function (c) { return c.id; }));",
                     "const pages = Number(pm.collectionVariables.get('page_count') || 0) + 1;",
                     "pm.collectionVariables.set('page_seen', JSON.stringify(seen));",
                     "pm.collectionVariables.set('page_count', pages);",
                     "if (pages === 1) { pm.collectionVariables.set('first_cursor', body.next_cursor); }",
                     "if (body.next_cursor && pages < 10) {",
                     "    pm.collectionVariables.set('page_cursor', body.next_cursor);",
                     "    pm.execution.setNextRequest(pm.info.requestName);",
                     "} else {",
                     "    pm.test('the walk ends with next_cursor null', function () {",
                     "        pm.expect(body.next_cursor).to.eql(null);",
                     "    });",
                     f"    pm.test('{PAGE_CUSTOMERS} customers on {-(-PAGE_CUSTOMERS // PAGE_SIZE)} pages, each once',"
                     " function () {",
                     f"        pm.expect(pages).to.eql({-(-PAGE_CUSTOMERS // PAGE_SIZE)});",
                     f"        pm.expect(seen).to.have.lengthOf({PAGE_CUSTOMERS});",
                     f"        pm.expect(new Set(seen).size).to.eql({PAGE_CUSTOMERS});",
                     "    });",
                     "}"]),
        Step("customers.list_customers", "A cursor is bound to its filters",
             query=[("q", "Gasthaus"), ("limit", str(PAGE_SIZE)), ("cursor", "{{first_cursor}}")],
             expect=400, problem="/problems/invalid-cursor"),
    ],
)

ERRORS = Folder(
    "Errors, auth and idempotency",
    "Every error is application/problem+json with the correlation id: no token (401 with a Bearer "
    "challenge), a role without the scope (403), out of scope (404), bad input (400 naming the field), "
    "duplicates (409), unsupported media type (415); idempotent creates replay.",
    [
        Step("customers.list_customers", "No token", role=None, expect=401, problem="/problems/unauthorized",
             checks=[("a Bearer challenge",
                      'pm.expect(pm.response.headers.get("WWW-Authenticate")).to.match(/^Bearer/);')]),
        Step("customers.list_customers", "A token that is not a JWT", role=None,
             headers={"Authorization": "Bearer not-a-jwt"}, expect=401, problem="/problems/unauthorized",
             checks=[("invalid_token",
                      'pm.expect(pm.response.headers.get("WWW-Authenticate")).to.include("invalid_token");')]),
        Step("customers.create_customer", "A role without the scope", role="integration", expect=403,
             body={"customer_number": "PM-{{RUN_ID}}-X", "name": "Nope", "type": "OTHER"},
             problem="/problems/forbidden"),
        Step("customers.get_customer", "Outside the chain manager's chains is 404", role="chain_manager",
             expect=404, problem="/problems/not-found"),
        Step("customers.get_customer", "An unknown id is 404", path={"customer_id": NIL_UUID},
             expect=404, problem="/problems/not-found"),
        Step("customers.create_customer", "Invalid input names the fields", expect=400,
             body={"customer_number": "not valid", "name": "X", "type": "PUB", "colour": "blue"},
             problem="/problems/validation-error",
             checks=[("errors name the fields", "const fields = body.errors.map(function (e) { return e.field; });\n"
                      "pm.expect(fields.join(' ')).to.include('customer_number');")]),
        Step("customers.list_customers", "An unknown query parameter", query=[("colour", "blue")], expect=400,
             problem="/problems/validation-error"),
        Step("customers.create_customer", "A duplicate customer number", expect=409, problem="/problems/conflict",
             body={"customer_number": "PM-{{RUN_ID}}-1", "name": "Doppelt", "type": "RESTAURANT"},
             checks=[("the problem names the existing customer",
                      'pm.expect(body.existing_id).to.eql(pm.collectionVariables.get("customer_id"));')]),
        Step("chains.create_chain", "An unsupported media type", content_type="text/plain", body="name=Kette",
             expect=415, problem="/problems/unsupported-media-type"),
        Step("chains.create_chain", "Create with an Idempotency-Key", expect=201,
             headers={"Idempotency-Key": "postman-{{run_id}}-chain"}, body={"name": "Idempotent {{run_id}}"},
             save={"idem_chain_id": "body.id"}),
        Step("chains.create_chain", "The same key and body replay the first answer", expect=201,
             headers={"Idempotency-Key": "postman-{{run_id}}-chain"}, body={"name": "Idempotent {{run_id}}"},
             checks=[("the same chain, replayed",
                      'pm.expect(body.id).to.eql(pm.collectionVariables.get("idem_chain_id"));\n'
                      'pm.expect(pm.response.headers.get("Idempotent-Replayed")).to.eql("true");')]),
        Step("chains.create_chain", "The same key with another body", expect=422,
             headers={"Idempotency-Key": "postman-{{run_id}}-chain"}, body={"name": "Other {{run_id}}"},
             problem="/problems/idempotency-key-reused"),
        Step("chains.get_chain", "An invalid correlation id is replaced", path={"chain_id": "{{idem_chain_id}}"},
             headers={"X-Correlation-ID": "not valid!"}),
    ],
)

PRIVACY = Folder("Erasure on request", "A contact asks to be forgotten: erased everywhere, recorded without the "
                 "personal data; asking again answers the same record.", [
    Step("customers.create_customer", "Create a customer for the erasure", role="sales_rep", expect=201,
         body={"customer_number": "PM-{{RUN_ID}}-E", "name": "Bistro Erasure {{run_id}}", "type": "RESTAURANT",
               "address": ADDRESS},
         save={"erasure_customer_id": "body.id"}),
    Step("contacts.create_contact", "Add the contact who asks", role="sales_rep", expect=201,
         path={"customer_id": "{{erasure_customer_id}}"},
         body={"first_name": "Jonas", "last_name": "Vogel", "email": "jonas.vogel@example.com",
               "phone": "+49 30 7654321"},
         save={"erasure_contact_id": "body.id", "erasure_contact_etag": "etag"}),
    Step("privacy.erase_contact", "Erase the contact", role="admin",
         path={"contact_id": "{{erasure_contact_id}}"}, headers={"If-Match": "{{erasure_contact_etag}}"},
         save={"erasure_id": "body.id"},
         checks=[("the record names the contact, not the person",
                  'pm.expect(body.contact_id).to.eql(pm.collectionVariables.get("erasure_contact_id"));\n'
                  'pm.expect(JSON.stringify(body)).to.not.include("Vogel");')]),
    Step("privacy.erase_contact", "Asking again answers the same record", role="admin",
         path={"contact_id": "{{erasure_contact_id}}"}, headers={"If-Match": "*"},
         checks=[("the same erasure",
                  'pm.expect(body.id).to.eql(pm.collectionVariables.get("erasure_id"));')]),
    Step("contacts.get_contact", "The contact is anonymised", role="sales_rep",
         path={"contact_id": "{{erasure_contact_id}}"},
         checks=[("no name, e-mail or phone left",
                  'pm.expect(JSON.stringify(body)).to.not.include("Vogel");\n'
                  'pm.expect(JSON.stringify(body)).to.not.include("jonas.vogel");')]),
])

FOLDERS = [HEALTH, CHAINS, CUSTOMERS, FIELDS, PRODUCTS, SAMPLES, DRAFTS, ACTIVITIES, EVENTS, WEBHOOKS, FLAGS, PRIVACY,
           CONCURRENCY, PAGINATION, ERRORS]
