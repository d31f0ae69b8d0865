// Calling the Kundenmanagement API from TypeScript with the types openapi-typescript generates from
// the served spec (`make sdk` writes build/sdk/ts/schema.d.ts; `tsc -p sdk/ts` type-checks this
// file, as tests/test_ecosystem.py does). Bodies, query parameters, enums and problems are all
// checked against the spec at compile time; a change of the spec that breaks a caller breaks here.
import type { components, operations } from "../../build/sdk/ts/schema";

type Schemas = components["schemas"];
export type Customer = Schemas["Customer"];
export type CustomerCreate = Schemas["CustomerCreate"];
export type CustomerPage = Schemas["CustomerPage"];
export type Problem = Schemas["Problem"];
export type SampleRequest = Schemas["SampleRequest"];
export type SampleStatus = Schemas["SampleStatus"];
export type ListCustomersQuery = NonNullable<operations["customers.list_customers"]["parameters"]["query"]>;
type ListCustomersOk = operations["customers.list_customers"]["responses"][200]["content"]["application/json"];

export interface Answer<T> {
  status: number;
  etag: string | null;
  body: T | Problem | null;
}

/** A small typed client: every method's body and answer types come from the spec. */
export class KundenmanagementClient {
  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
  ) {}

  private async call<T>(method: string, path: string, init: { body?: unknown; headers?: Record<string, string> } = {}): Promise<Answer<T>> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.token}`, ...init.headers };
    if (init.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(this.baseUrl + path, {
      method,
      headers,
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
    const text = await response.text();
    return {
      status: response.status,
      etag: response.headers.get("ETag"),
      body: text ? (JSON.parse(text) as T | Problem) : null,
    };
  }

  listCustomers(query: ListCustomersQuery = {}): Promise<Answer<ListCustomersOk>> {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined) search.set(key, String(value));
    }
    return this.call<CustomerPage>("GET", `/api/v1/customers?${search.toString()}`);
  }

  createCustomer(customer: CustomerCreate, idempotencyKey?: string): Promise<Answer<Customer>> {
    const headers: Record<string, string> = idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {};
    return this.call<Customer>("POST", "/api/v1/customers", { body: customer, headers });
  }

  moveSampleRequest(id: string, etag: string, to: SampleStatus, reason?: string): Promise<Answer<SampleRequest>> {
    const body: Schemas["SampleTransition"] = { to, reason };
    return this.call<SampleRequest>("POST", `/api/v1/sample-requests/${id}/transitions`, {
      body,
      headers: { "If-Match": etag },
    });
  }
}

export function isProblem(body: unknown): body is Problem {
  return typeof body === "object" && body !== null && "type" in body && "status" in body;
}

/** Walks every page of a customer list by `next_cursor`. */
export async function* allCustomers(client: KundenmanagementClient, query: ListCustomersQuery): AsyncGenerator<Customer> {
  let cursor: string | undefined;
  do {
    const page = await client.listCustomers({ ...query, cursor });
    if (isProblem(page.body) || page.body === null) throw new Error(`HTTP ${page.status}`);
    yield* page.body.items;
    cursor = page.body.next_cursor ?? undefined;
  } while (cursor);
}

// --- what the types refuse (each line must fail to compile; tsc fails if one compiles) ---------

export const hotel: CustomerCreate = { customer_number: "K-100234", name: "Hotel Sonne", type: "HOTEL" };
// @ts-expect-error -- "PUB" is not a customer type
export const pub: CustomerCreate = { customer_number: "K-100235", name: "Zum Hirschen", type: "PUB" };
// @ts-expect-error -- customer_number is required
export const nameless: CustomerCreate = { name: "Ohne Nummer", type: "HOTEL" };
// @ts-expect-error -- limit is a number
export const badQuery: ListCustomersQuery = { limit: "many" };
// @ts-expect-error -- SOLD is not a sample request status
export const badStatus: SampleStatus = "SOLD";
export const problemType: Problem["type"] = "/problems/etag-mismatch";
