//! FIFO lots and per-symbol positions, derived from fills inside the fill's own transaction.
//!
//! A fill first closes the symbol's oldest opposite-side lots (realizing `(exit - entry) x
//! shares`, sign-adjusted for shorts), then opens a lot with whatever is left. Commissions are
//! charged to realized P&L when paid, so for every symbol
//! `realized_pnl = cash flow of its fills + cost_basis of its open lots`, and summed over
//! symbols `cash - starting_cash + sum(cost_basis) = sum(realized_pnl)` holds exactly.
//!
//! `Store::rebuild_positions` replays every fill through the same function, so rebuilt and
//! incremental tables agree by construction; the tests check both against hand values and
//! against `robo_core::ledger::Ledger` replaying the same fills.

use rusqlite::{params, Connection, OptionalExtension};
use rust_decimal::Decimal;

use super::codec::{dec_text, parse_dec, parse_side, At};
use super::StoreError;
use robo_core::types::{Price, Qty, Side};

/// A fill as the FIFO needs it (already validated: qty > 0).
pub(crate) struct FifoFill<'a> {
    pub exec_id: &'a str,
    pub symbol: &'a str,
    pub side: Side,
    pub qty: Qty,
    pub price: Price,
    pub commission: Decimal,
    pub ts: &'a str,
}

struct OpenLot {
    id: i64,
    side: Side,
    remaining: Qty,
    price: Price,
}

fn overflow(what: &str, symbol: &str) -> StoreError {
    StoreError::Invalid(format!("{what} overflows for symbol {symbol}"))
}

fn mul(a: Decimal, b: Decimal, what: &str, symbol: &str) -> Result<Decimal, StoreError> {
    a.checked_mul(b).ok_or_else(|| overflow(what, symbol))
}

fn add(a: Decimal, b: Decimal, what: &str, symbol: &str) -> Result<Decimal, StoreError> {
    a.checked_add(b).ok_or_else(|| overflow(what, symbol))
}

fn open_lots(conn: &Connection, symbol: &str) -> Result<Vec<OpenLot>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, side, remaining, price FROM lots
         WHERE symbol = ?1 AND remaining > 0 ORDER BY id",
    )?;
    let rows = st.query_map([symbol], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, side, remaining, price) = row?;
        let idt = id.to_string();
        out.push(OpenLot {
            id,
            side: parse_side(
                &side,
                At {
                    table: "lots",
                    column: "side",
                    row: &idt,
                },
            )?,
            remaining,
            price: parse_dec(
                &price,
                At {
                    table: "lots",
                    column: "price",
                    row: &idt,
                },
            )?,
        });
    }
    Ok(out)
}

/// Applies one new fill to `lots` and `positions`. Call inside the transaction that inserted it.
pub(crate) fn apply_fill(conn: &Connection, f: &FifoFill<'_>) -> Result<(), StoreError> {
    let sym = f.symbol;
    let (mut realized, mut commissions) = match conn
        .query_row(
            "SELECT realized_pnl, commissions FROM positions WHERE symbol = ?1",
            [sym],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()?
    {
        Some((r, c)) => (
            parse_dec(
                &r,
                At {
                    table: "positions",
                    column: "realized_pnl",
                    row: sym,
                },
            )?,
            parse_dec(
                &c,
                At {
                    table: "positions",
                    column: "commissions",
                    row: sym,
                },
            )?,
        ),
        None => (Decimal::ZERO, Decimal::ZERO),
    };

    let mut lots = open_lots(conn, sym)?;
    let mut left = f.qty;
    for lot in lots.iter_mut().filter(|l| l.side != f.side) {
        if left == 0 {
            break;
        }
        let m = left.min(lot.remaining);
        // Long lot closed by a sell: (exit - entry) x m. Short lot closed by a buy: the negative.
        let per_share = (f.price - lot.price) * Decimal::from(lot.side.sign());
        realized = add(
            realized,
            mul(per_share, Decimal::from(m), "realized P&L", sym)?,
            "realized P&L",
            sym,
        )?;
        lot.remaining -= m;
        left -= m;
        conn.prepare_cached(
            "UPDATE lots SET remaining = ?2,
                    closed_ts = CASE WHEN ?2 = 0 THEN ?3 ELSE closed_ts END
             WHERE id = ?1",
        )?
        .execute(params![lot.id, lot.remaining, f.ts])?;
    }
    if left > 0 {
        conn.prepare_cached(
            "INSERT INTO lots (symbol, open_exec_id, side, quantity, remaining, price, opened_ts)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
        )?
        .execute(params![
            sym,
            f.exec_id,
            f.side.as_str(),
            left,
            dec_text(f.price),
            f.ts
        ])?;
        lots.push(OpenLot {
            id: 0,
            side: f.side,
            remaining: left,
            price: f.price,
        });
    }
    commissions = add(commissions, f.commission, "commissions", sym)?;
    realized = realized
        .checked_sub(f.commission)
        .ok_or_else(|| overflow("realized P&L", sym))?;

    let mut qty: Qty = 0;
    let mut cost_basis = Decimal::ZERO;
    for lot in lots.iter().filter(|l| l.remaining > 0) {
        let signed = lot.remaining * lot.side.sign();
        qty = qty
            .checked_add(signed)
            .ok_or_else(|| overflow("position quantity", sym))?;
        cost_basis = add(
            cost_basis,
            mul(lot.price, Decimal::from(signed), "cost basis", sym)?,
            "cost basis",
            sym,
        )?;
    }
    let avg_cost = if qty == 0 {
        Decimal::ZERO
    } else {
        (cost_basis / Decimal::from(qty)).round_dp(6)
    };
    conn.prepare_cached(
        "INSERT INTO positions (symbol, quantity, avg_cost, cost_basis, realized_pnl, commissions,
                                updated_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (symbol) DO UPDATE SET
             quantity = excluded.quantity, avg_cost = excluded.avg_cost,
             cost_basis = excluded.cost_basis, realized_pnl = excluded.realized_pnl,
             commissions = excluded.commissions, updated_ts = excluded.updated_ts",
    )?
    .execute(params![
        sym,
        qty,
        dec_text(avg_cost),
        dec_text(cost_basis),
        dec_text(realized),
        dec_text(commissions),
        f.ts
    ])?;
    Ok(())
}

/// Drops `lots` and `positions` and replays every fill in arrival order.
pub(crate) fn rebuild(conn: &Connection) -> Result<usize, StoreError> {
    conn.execute_batch("DELETE FROM lots; DELETE FROM positions;")?;
    let mut st = conn.prepare(
        "SELECT exec_id, symbol, side, quantity, price, commission, ts FROM fills ORDER BY id",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
        ))
    })?;
    let mut n = 0;
    for row in rows {
        let (exec_id, symbol, side, qty, price, commission, ts) = row?;
        let at = |column| At {
            table: "fills",
            column,
            row: &exec_id,
        };
        let fill = FifoFill {
            exec_id: &exec_id,
            symbol: &symbol,
            side: parse_side(&side, at("side"))?,
            qty,
            price: parse_dec(&price, at("price"))?,
            commission: parse_dec(&commission, at("commission"))?,
            ts: &ts,
        };
        apply_fill(conn, &fill)?;
        n += 1;
    }
    Ok(n)
}
