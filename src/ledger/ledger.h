// src/ledger/ledger.h
// The ledger: a deterministic state machine. apply(state, command, now) -> (state',
// reply, events). It does no I/O and reads no clock: the batch's now is given, and the
// ledger's now is max(that, the last instant it logged). Results are values with the
// error codes of API.md, checked in its order: 404; idempotent replay or 422; 400
// validation; 429; 409 or 403 purchase_not_allowed; 402.
// Owns: accounts, buckets, holds, charges, refunds, resets, plan changes, idempotency,
// events. Does not: price usage (pricing/), decide rate limits or cache hits (policy/),
// log or snapshot (store/).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "ledger/command.h"
#include "ledger/deferred_stores.h"
#include "ledger/event.h"
#include "ledger/idempotency.h"
#include "ledger/internal/account_index.h"
#include "ledger/internal/reply_store.h"
#include "ledger/limits.h"
#include "ledger/state.h"
#include "pricing/plan.h"

namespace credit::ledger {

struct LedgerOptions {
  std::size_t accounts_max = kAccountsMaxDefault;
  std::size_t open_holds_per_account_max = kOpenHoldsPerAccountMaxDefault;
  std::size_t live_grants_per_pool_max = kLiveGrantsPerPoolMaxDefault;
  std::size_t idempotency_keys_max = kIdempotencyKeysMaxDefault;
  // Runs memory preparation (faulting in the next idempotency array) on another thread;
  // null: the ledger's own thread does it a little per insert. Never touches the state.
  std::function<void(std::function<void()>)> background = nullptr;
};

// The capacities whose refusals (409 limit_reached) are stored answers: the values in
// force are part of the state (the server logs a change of its flags and snapshots them),
// so a replay refuses exactly what was refused, whatever the flags of a later start.
struct Capacities {
  std::size_t accounts_max = kAccountsMaxDefault;
  std::size_t open_holds_per_account_max = kOpenHoldsPerAccountMaxDefault;
  std::size_t live_grants_per_pool_max = kLiveGrantsPerPoolMaxDefault;
  bool operator==(const Capacities&) const = default;
};

// The refusal of every later mutation of a closed account (API.md: 409).
Error account_closed_error();

// The answer to one command: an HTTP-like status and a JSON body (API.md's shapes).
struct Reply {
  int status = 200;
  ErrorCode code = ErrorCode::kOk;
  std::string body;
  // The body is a successful charge's or capture's answer in its packed form
  // (ReplyForm::kPacked): render_reply() turns it into the JSON.
  bool packed = false;
  bool replayed = false;
  // The command changed the state (or recorded an event): the store must log it.
  bool logged = false;
  std::int64_t retry_after_ms = 0;  // 429
};

// Renders a packed reply's body as its JSON (the same bytes ReplyForm::kRendered gives);
// any other reply is left as it is. Reads nothing of a ledger: any thread may call it.
void render_reply(Reply& reply);

// How apply() answers a successful charge or capture (the reply a key stores is the same
// either way).
enum class ReplyForm : std::uint8_t {
  kRendered,  // the JSON, the default
  // Its packed form (reply_pack.h), Reply::packed set: a server renders it with
  // render_reply() on a thread other than the ledger's, which only packs.
  kPacked,
  kNone,  // nothing: a replay of the command log, which discards the answers
};

class Ledger {
 public:
  Ledger(pricing::Catalog catalog, LedgerOptions options = {});

  // Starts a batch: the ledger's now becomes max(now_ms, last instant) and expired
  // idempotency keys are released. Returns the batch's now.
  std::int64_t begin_batch(std::int64_t now_ms);
  // Applies one command of the current batch; appends the events it made.
  Reply apply(Command& command, std::vector<Event>& events);
  // The same, answering into `reply` (every field is set): a caller that reuses one
  // Reply keeps its body's capacity, so a charge's answer allocates nothing.
  void apply(Command& command, std::vector<Event>& events, Reply& reply);
  // A hint for a batch applied in order: call it before applying batch[next]. It starts
  // loading what the coming commands will read, in stages a few commands apart (each
  // stage reads what the one before loaded): the commands' bytes; their idempotency
  // and account index slots; their accounts; the accounts' pools and charge tables.
  // With millions of keys and thousands of accounts each is a cache miss, which a batch
  // hides this way. Changes nothing.
  void prefetch(std::span<const Command> batch, std::size_t next) const;
  // The same for a batch whose commands lie apart (the server's, among other ops).
  void prefetch(std::span<Command* const> batch, std::size_t next) const;
  // Takes back the heap parts of events the caller is done with (drawn_from lists,
  // metadata strings) for the next commands' events, and clears `events`.
  void recycle_events(std::vector<Event>& events);
  // For a replay of the command log: the events numbered up to `seq` are in the event log
  // already, so the commands that make them fill one reused event instead of appending
  // them to `events` (a start that replays millions of commands builds none of them), and
  // the resets and expiries made on the way are dropped once numbered. Replies, state and
  // numbering are the same. 0, the default and what a serving ledger keeps: every event is
  // appended.
  void set_events_durable_through(std::uint64_t seq) { events_durable_through_ = seq; }
  // How a successful charge's or capture's answer is given (ReplyForm); a retry of its key
  // gets the same bytes whichever it is.
  void set_reply_form(ReplyForm form) { reply_form_ = form; }
  // While deferred, the idempotency table prepares no next array ahead of a doubling
  // (IdempotencyTable::defer_next_array): a start rebuilding the state does only what
  // serving needs, and the preparation (faulting in up to gigabytes) follows it.
  void defer_growth(bool deferred) { idempotency_.defer_next_array(deferred); }
  // Makes the command's hashes of its account and user ids (Command::account_hash) now,
  // on whichever thread calls it: a replay hashes on the thread that decodes.
  static void hash_ids(const Command& c);
  // A start that expects about `keys_more` idempotency keys from its log prepares the
  // table for them at once (IdempotencyTable::reserve).
  void reserve_idempotency_keys(std::size_t keys_more);
  // A replay of the command log hands the idempotency table and the stored replies to
  // another thread: with `out` set, commands look no key up and store no reply here;
  // begin_batch's expiry, each reply to store and reserve_idempotency_keys go to `out`
  // instead, in order, for apply_deferred_stores on that thread (which alone touches the
  // table and the replies until this is set back to nullptr, after its last call). No
  // lookup is needed: a command was logged only if its key was not live (a live key is
  // answered from the table and not logged), and apply_deferred_stores checks that.
  // Stores from parts: set_reply_form(ReplyForm::kNone) is expected with it.
  void defer_stores(DeferredStores* out) { deferred_ = out; }
  // Applies deferred stores in order. An error (and the state is then not to be used): a
  // key stored was live, or the table was full, which a log written by this ledger never
  // holds.
  Status apply_deferred_stores(const DeferredStores& stores);
  // The checks before any change, in API.md's order: 404, idempotent replay or 422,
  // validation (precheck_error), capacity. A reply means the command stops there and
  // changes nothing; nullopt means the policy layer may decide (cache, rate limit) and
  // then apply(). apply() runs gate() itself, so replaying a log needs no policy; after
  // a gate() that let the command through, the next apply() of it does not check again.
  std::optional<Reply> gate(Command& command);

  // Idempotency of the engine's own keyed ops (key creation, server/engine.cc). They are
  // not ledger commands, but their keys live in this same table, so a key is one key
  // across every route (the same key on another route: 422) with the same 24 hours,
  // capacity and snapshots. The stored reply is whatever the op gives (never a secret).
  // The answer for idem's key at the batch's now: the stored reply (replayed), 422, or
  // 503 idempotency_capacity; nullopt when the key is new and may be stored.
  std::optional<Reply> gate_external(const IdempotencyRef& idem) const;
  // Stores `body` under idem's key until expires_at_ms (the batch's now + 24 h, logged
  // with the op, so a replay of the log stores it the same way); first releases the keys
  // expired at that batch's now, as begin_batch did.
  void store_external(const IdempotencyRef& idem, int status, std::string_view body,
                      std::int64_t expires_at_ms);

  // Reads: the last applied state projected to at_ms, without changing anything.
  Result<AccountView> view(std::string_view account_id, std::int64_t at_ms) const;
  void render_account(const AccountView& view, std::string& out) const;
  const Account* find(std::string_view account_id) const;
  const pricing::Catalog& catalog() const { return catalog_; }
  // The TOML text of rate card `version` as it was loaded (nullptr: never loaded).
  const std::string* rate_card_text(std::int64_t version) const;
  const std::map<std::int64_t, std::string>& rate_cards() const { return rate_cards_; }
  std::int64_t now_ms() const { return now_ms_; }
  // The earliest instant at which some account has a hold expiry, a grant expiry or a
  // cycle boundary to apply (kNeverMs: none): a Sweep command at a now at or after it
  // changes something; before it, a sweep would change nothing. O(1) when nothing became
  // due; an entry found stale (an account advanced lazily since) costs a walk of that
  // account's holds and grants. Changes no state, only the queue that answers this.
  std::int64_t next_due_ms();
  // The instant of account `a`'s next hold expiry, grant expiry or cycle end.
  static std::int64_t next_due_ms(const Account& a);
  std::uint64_t next_seq() const { return next_seq_; }
  // The capacities in force, and their change (a logged configuration, like the catalog).
  Capacities capacities() const {
    return {options_.accounts_max, options_.open_holds_per_account_max,
            options_.live_grants_per_pool_max};
  }
  void set_capacities(const Capacities& c);
  // Numbers an event that no command made (an imported one, API.md's import with
  // mode=analytics) with the next sequence number and appends it to `events`. The ledger
  // owns the numbering, so replaying the log numbers it the same way; nothing else changes.
  void number_external(Event event, std::vector<Event>& events);
  std::size_t account_count() const { return accounts_.size(); }
  // Account ids in order, starting after `after` (list routes).
  std::vector<std::string> list_accounts(std::string_view after, std::size_t limit) const;
  const std::map<std::string, std::unique_ptr<Account>>& accounts() const { return accounts_; }

  // Checks every invariant of every account (tests; aborts on a broken one).
  void check_invariants() const;
  // The projection of one account's balances to at_ms: a copy of its pools and open
  // holds, advanced lazily (no charge records, no closed holds).
  Account projected(const Account& account, std::int64_t at_ms) const;
  static PoolView pool_view(const Account& account, const PoolState& pool, std::int64_t at_ms);
  // A charge's record as a read at at_ms sees it: nullptr when the account has none by
  // that id, or when the resets the next write at at_ms applies first would forget it
  // (a charge older than the last cycle), so GET and the write after it agree.
  const ChargeRecord* charge_at(const Account& account, std::string_view charge_id,
                                std::int64_t at_ms) const;

 private:
  // Ledger::prefetch's stages over the commands at(0) .. at(n - 1).
  template <class At>
  void prefetch_stages(std::size_t n, std::size_t next, At at) const;
  // ledger/snapshot_codec.cc reads and restores the whole state (and nothing else does).
  friend struct SnapshotAccess;

  static const std::string* account_of(const Command& c);
  Reply apply_create(Command& c, CreateAccount& cmd, std::vector<Event>& events);
  Reply apply_close(Command& c, Account& a, std::vector<Event>& events);
  Reply apply_change_plan(Command& c, Account& a, ChangePlan& cmd, std::vector<Event>& events);
  Reply apply_grant(Command& c, Account& a, AddGrant& cmd, std::vector<Event>& events);
  void apply_charge(Command& c, Account& a, Charge& cmd, std::vector<Event>& events, Reply& r);
  // Sets what a charge's (or cache hit's) event says of it beyond the numbers: user, kind,
  // pool, credits (moved or saved), pricing, usage, metadata, keys, rate card version.
  void describe_charge(const Command& c, const Charge& cmd, const std::string& pool,
                       Millicredits credits, Event& e);
  Reply apply_hold(Command& c, Account& a, Hold& cmd, std::vector<Event>& events);
  Reply apply_capture(Command& c, Account& a, Capture& cmd, std::vector<Event>& events);
  // A charge's or hold's refusal for credits (402), with its `rejected` event; nothing when
  // `available` and the day's cap cover cmd.amount. Defined and used in ledger.cc only.
  template <class ChargeOrHold>
  std::optional<Reply> refuse_if_short(Command& c, const Account& a, const PoolState& pool,
                                       const ChargeOrHold& cmd, Millicredits available,
                                       std::vector<Event>& events);
  // A charge's record for the account's charge table, but its cost and draws.
  ChargeRecord charge_record(const Command& c, Account& a, const Charge& cmd, const PoolState& pool,
                             std::size_t pool_index);
  HoldRecord* open_hold(Command& c, Account& a, const std::string& hold_id, Reply* stop);
  Reply apply_void(Command& c, Account& a, Void& cmd, std::vector<Event>& events);
  Reply apply_refund(Command& c, Account& a, Refund& cmd, std::vector<Event>& events);
  Reply apply_sweep(std::vector<Event>& events);
  void record_refusal(const Command& c, const Account& a, const Reply& r,
                      std::vector<Event>& events);
  Reply apply_load_catalog(LoadCatalog& cmd);
  Reply apply_load_rate_card(const LoadRateCard& cmd);

  // Applies every hold expiry, grant expiry and cycle boundary up to now_ms, in time
  // order (at one instant: holds, grants, rollover, pending plan, new allowance).
  // At most instants_max instants (each: its expiries, and the boundary if there is one
  // at it); returns how many it applied.
  std::size_t advance(Account& a, std::int64_t now_ms, std::vector<Event>* events,
                      std::size_t instants_max = SIZE_MAX) const;
  Reply finish(Command& c, Reply reply);
  // Marks the reply logged and stores it under the command's key when it is stored
  // (from `charge` when given: a successful charge's or capture's parts).
  void store(Command& c, Reply& reply, const ChargeReplyParts* charge = nullptr);
  // A successful charge's or capture's answer: rendered or packed into reply.body, or
  // neither (reply_form_), then stored from its parts.
  void answer_charge(Command& c, Reply& reply, const ChargeReplyParts& parts);
  std::vector<DrawnFrom> take_drawn_list();
  void copy_metadata(const Metadata& from, Metadata& to);
  Reply stored_or_new(Command& c, bool* proceed);
  static std::optional<Reply> precheck_reply(const Command& c);
  // Releases the keys expired at now_ms and their replies, or defers that (defer_stores).
  void expire_keys(std::int64_t now_ms);
  // With stores deferred (defer_stores), a new item of `kind` at the end of them (its
  // other fields as last used); nullptr otherwise.
  DeferredStore* deferred(DeferredStore::Kind kind);
  // A deferred store under idem's key until expires_at_ms; returns its bytes, empty, for
  // the caller to fill (a body, or a charge's packed answer for kStorePacked).
  std::string& defer_store(DeferredStore::Kind kind, const IdempotencyRef& idem, int status,
                           std::int64_t expires_at_ms);
  // The stored answer (a replay) or the 422 of another request, when the key is live.
  std::optional<Reply> replay_if_live(const IdempotencyRef& idem) const;
  Event& push_event(std::vector<Event>& events, EventType type, const Account& a);
  // False for an event push_event filled only to be dropped (set_events_durable_through):
  // fields that only describe it to the event log need not be set.
  bool event_kept(const Event& e) const { return &e != &quiet_event_; }
  std::string new_id(char prefix);
  Error insufficient(const Account& a, const PoolState& pool, Millicredits required,
                     bool by_cap) const;
  // The account by id through the hash index (nullptr if none).
  Account* lookup(std::string_view account_id) const;
  // The same for the command's account (it has one), with the hash it keeps
  // (Command::account_hash).
  Account* lookup(const Command& c) const;
  // A prefetch hint: the account in the first index slot of the command's account hash,
  // without comparing ids (AccountIndex::peek); nullptr when the command has none.
  const Account* peek_account(const Command& c) const;
  // The command's hashes of its account and user ids, made once.
  static std::uint64_t account_hash(const Command& c, const std::string& account_id);
  static std::uint64_t user_hash(const Command& c, const std::string& user_id);
  void index_account(const std::string& account_id, Account* account);
  // Queues `a` for the sweep at due_ms unless it is queued at or before it already.
  void queue_due(Account& a, std::int64_t due_ms);
  // After a command on `a`: queues what it may have made due earlier (a hold, a grant,
  // a new cycle), without walking the account's holds for a charge.
  void queue_due_after(const Command& c, Account& a);
  const pricing::Plan* cheapest_upgrade(const Account& a, std::string_view pool,
                                        Millicredits need) const;

  pricing::Catalog catalog_;
  // Every rate card version loaded, by version: its TOML text (holds name their version).
  std::map<std::int64_t, std::string> rate_cards_;
  LedgerOptions options_;
  std::map<std::string, std::unique_ptr<Account>> accounts_;  // in id order (lists, snapshots)
  // The same accounts by id for the per-command lookup: a hash of the id instead of
  // string compares down the tree.
  AccountIndex account_index_;
  IdempotencyTable idempotency_;
  // Stored replies by reply number (key entries point here), released with their keys.
  ReplyStore replies_;
  // Heap parts of recycled events, reused by the next events (recycle_events).
  std::vector<std::vector<DrawnFrom>> spare_drawn_;
  std::vector<Metadata> spare_metadata_;
  // set_events_durable_through: events numbered up to it are filled in quiet_event_.
  std::uint64_t events_durable_through_ = 0;
  Event quiet_event_;
  // Whether the command being applied pushed a `rejected` event (record_refusal).
  bool rejected_pushed_ = false;
  ReplyForm reply_form_ = ReplyForm::kRendered;
  DeferredStores* deferred_ = nullptr;  // defer_stores
  // The sweep queue: a min-heap of (due instant, account) ordered by instant then account
  // id, with at least one entry at or before each account's next due instant
  // (Account::due_queued_ms; entries that differ from it are stale and dropped). Not
  // state: rebuilt from the accounts (index_account), never logged or encoded.
  struct DueEntry {
    std::int64_t due_ms;
    Account* account;
  };
  // The queue's order (std::push_heap's "less"): the earliest instant on top, ties by
  // account id, so that a sweep advances accounts in an order that depends on the state
  // only, never on stale entries.
  static bool due_later(const DueEntry& x, const DueEntry& y);
  std::vector<DueEntry> due_queue_;
  std::int64_t now_ms_ = 0;
  std::uint64_t next_seq_ = 1;
  std::uint64_t batch_seq_start_ = 1;
  // This ledger among all made in the process (from 1): the owner of the account
  // pointers a command keeps (Command::found_account), so that none is used by another.
  std::uint64_t instance_ = next_instance();
  static std::uint64_t next_instance();
  // Forgets the account pointers `c` keeps unless this ledger set them.
  void claim_pointers(const Command& c) const;
};

}  // namespace credit::ledger
