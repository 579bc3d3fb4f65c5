package waf

// Where sekisho's embedded rule set departs from the CRS v4 defaults, and
// why. Each departure was found by sending ordinary clients through the
// default WAF (TestOrdinaryClientsPassTheDefaultWAF) and is pinned both ways:
// the ordinary request passes, the attack the CRS rule is there for is still
// denied (TestDefaultsStillStopAttacks).
//
//   - Expect: 100-continue is allowed. CRS 4.25 puts /expect/ in
//     tx.restricted_headers_basic (rule 901165), so rule 920450 ("HTTP
//     header is restricted by policy") denies any request carrying Expect:
//     curl sends "Expect: 100-continue" on uploads over 1 KiB, and so do
//     .NET's HttpWebRequest, libcurl-based SDKs and Go clients with
//     ExpectContinueTimeout. The CRS lists it against Expect-based request
//     desync (PortSwigger, "HTTP/1.1 must die", 2025), which relies on
//     obfuscated or unexpected values ("Expect: y 100-continue",
//     "Expect: 100-continueX") that a front end and a back end read
//     differently. Go's HTTP/1.1 server answers 417 to an Expect without a
//     100-continue token but takes "y 100-continue" as one; sekisho's own rule 200012 (RuleBadExpect) denies
//     every Expect value that is not exactly "100-continue"
//     (case-insensitive, RFC 9110 section 10.1.1), so only the one form
//     every server agrees on is forwarded. The other restricted headers
//     (Content-Encoding, Proxy, Lock-Token, Content-Range, If,
//     X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override,
//     X-Middleware-Subrequest) stay denied by 920450 as the CRS intends.
//
//   - PUT, PATCH and DELETE are allowed methods. The CRS default
//     tx.allowed_methods (rule 901160) is GET HEAD POST OPTIONS, so rule
//     911100 ("Method is not allowed by policy") denies every REST update
//     and delete: a browser app's PATCH and DELETE calls, the OpenAI API's
//     DELETE /v1/files/..., an MCP client ending its session with DELETE.
//     crs-setup.conf.example names exactly these three for RESTful APIs.
//     TRACE, TRACK, CONNECT, DEBUG and the WebDAV methods (PROPFIND, MOVE,
//     COPY, LOCK, MKCOL, ...) stay denied by 911100. Use a rule with
//     expr 'request.method in ["PUT", "DELETE"]' to refuse them on a route.
//
// Left as the CRS has them, on purpose: rule 920420 denies request bodies
// whose Content-Type is not form, multipart, XML or JSON (a text/plain
// sendBeacon, text/csv, application/octet-stream uploads), because the CRS
// then inspects such a body as if it were a form and would misread it;
// disable 920420 for a route that takes such bodies.
const (
	// allowedMethods replaces the CRS default tx.allowed_methods
	// ("GET HEAD POST OPTIONS") with the REST methods added.
	allowedMethods = "GET HEAD POST OPTIONS PUT PATCH DELETE"
	// restrictedHeadersBasic is the CRS 4.25 default
	// tx.restricted_headers_basic without /expect/ (see RuleBadExpect).
	// TestRestrictedHeadersFollowTheCRS fails when the embedded CRS's list
	// changes, so a new entry is never silently dropped.
	restrictedHeadersBasic = "/content-encoding/ /proxy/ /lock-token/ /content-range/ /if/ /x-http-method-override/ /x-http-method/ /x-method-override/ /x-middleware-subrequest/"
)
