/* Per-worker counters: the field table, summing, and sums kept after a
 * worker unregisters. */
#include "test.h"
#include "wafer/stats.h"

TEST(field_table_covers_the_struct)
{
    CHECK(wf_stats_nfields > 10);
    /* every scalar field is named once, in order, before the per-reason array */
    for (size_t i = 0; i < wf_stats_nfields; i++)
        CHECK_EQ_INT(wf_stats_fields[i].offset, i * sizeof(uint64_t));
    CHECK_EQ_INT(offsetof(wf_stats_t, http_reject), wf_stats_nfields * sizeof(uint64_t));
    CHECK_EQ_STR(wf_stats_fields[0].name, "conn_accepted");
}

TEST(sum_over_workers_and_after_unregister)
{
    static wf_stats_t a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    CHECK_EQ_INT(wf_stats_register(&a), 0);
    CHECK_EQ_INT(wf_stats_register(&b), 0);
    WF_STAT_INC(&a, requests);
    WF_STAT_INC(&a, requests);
    WF_STAT_INC(&b, requests);
    WF_STAT_ADD(&b, bytes_out, 1000);
    WF_STAT_INC(&a, http_reject[WF_HTTP_E_CL_AND_TE]);
    wf_stats_t sum;
    wf_stats_sum(&sum);
    CHECK_EQ_INT(sum.requests, 3);
    CHECK_EQ_INT(sum.bytes_out, 1000);
    CHECK_EQ_INT(sum.http_reject[WF_HTTP_E_CL_AND_TE], 1);
    wf_stats_unregister(&a);
    WF_STAT_INC(&a, requests); /* no longer counted */
    wf_stats_sum(&sum);
    CHECK_EQ_INT(sum.requests, 3);
    wf_stats_unregister(&b);
    wf_stats_sum(&sum);
    CHECK_EQ_INT(sum.requests, 3);
    CHECK_EQ_INT(sum.bytes_out, 1000);
}

TEST_MAIN()
